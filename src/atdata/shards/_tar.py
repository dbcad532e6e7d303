"""The POSIX tar layout, written and parsed by hand for speed.

Python's ``tarfile`` costs tens of microseconds per member; a shard of small
samples is nothing but members, so atdata builds ustar headers from a
precomputed template and parses them with slicing. The output is plain ustar
that ``tar``, ``tarfile`` and the ``webdataset`` package read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple

__all__ = ["BLOCK", "Member", "TarFormatError", "end_of_archive", "iter_members", "member_header"]

BLOCK = 512
RECORD = BLOCK * 20  # tar's default record size; archives are padded to it
_ZERO_BLOCK = bytes(BLOCK)


class TarFormatError(ValueError):
    """Bytes that do not parse as a tar archive; ``offset`` is where it went wrong."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"{reason} at byte {offset}")


def _template() -> tuple[bytearray, int]:
    header = bytearray(BLOCK)
    header[100:108] = b"0000644\x00"  # mode
    header[108:116] = b"0000000\x00"  # uid
    header[116:124] = b"0000000\x00"  # gid
    header[136:148] = b"00000000000\x00"  # mtime: 0, so equal input gives equal bytes
    header[148:156] = b"        "  # checksum field counts as spaces
    header[156:157] = b"0"  # regular file
    header[257:263] = b"ustar\x00"
    header[263:265] = b"00"
    return header, sum(header)


_TEMPLATE, _TEMPLATE_SUM = _template()


def member_header(name: bytes, size: int) -> bytes:
    """A 512-byte ustar header for a regular file ``name`` of ``size`` bytes.

    Raises:
        ValueError: when the name does not fit in 100 bytes.
    """
    if len(name) > 100:
        raise ValueError(f"member name {name!r} is longer than 100 bytes")
    header = _TEMPLATE[:]
    header[0 : len(name)] = name
    size_field = b"%011o\x00" % size
    header[124:136] = size_field
    checksum = _TEMPLATE_SUM + sum(name) + sum(size_field)
    header[148:156] = b"%06o\x00 " % checksum
    return bytes(header)


def padding(size: int) -> bytes:
    """Zero bytes that pad a member's data to a whole block."""
    return _ZERO_BLOCK[: -size % BLOCK]


def end_of_archive(position: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, for an archive at ``position``."""
    end = position + 2 * BLOCK
    return bytes(2 * BLOCK + (-end % RECORD))


class Member(NamedTuple):
    """One regular file in a tar stream."""

    name: str
    offset: int  # of its first header (a pax or long-name header when present)
    size: int  # bytes of data
    span: int  # bytes from ``offset`` to the end of its padded data
    data: memoryview


def _parse_size(field: bytes, offset: int) -> int:
    if field[0] & 0x80:  # GNU base-256 for sizes over 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\x00 ").lstrip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(offset, f"bad size field {bytes(field)!r}") from None


def _pax_path(data: bytes) -> str | None:
    # records are "<len> key=value\n"
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8")
        pos += length
    return None


def iter_members(stream: IO[bytes], chunk_size: int = 16 << 20) -> Iterator[Member]:
    """Yield the regular files of a tar stream with their byte offsets.

    ``data`` views are valid until the next member is requested. Directories
    and global pax headers are skipped; pax ``path`` and GNU long names are
    honoured.

    Raises:
        TarFormatError: on a bad header or a stream that ends inside a member.
    """
    buf = b""
    view = memoryview(buf)
    pos = 0  # position in buf
    base = 0  # stream offset of buf[0]
    eof = False

    def fill(need: int) -> bool:
        nonlocal buf, view, pos, base, eof
        while len(buf) - pos < need and not eof:
            more = stream.read(max(chunk_size, need - (len(buf) - pos)))
            if not more:
                eof = True
                break
            base += pos
            buf = buf[pos:] + more if pos < len(buf) else more
            view = memoryview(buf)
            pos = 0
        return len(buf) - pos >= need

    long_name: str | None = None
    start: int | None = None
    while True:
        if not fill(BLOCK):
            if len(buf) == pos:
                raise TarFormatError(
                    base + pos, "stream ends without the end-of-archive blocks (truncated?)"
                )
            raise TarFormatError(base + pos, "stream ends inside a tar header")
        header = buf[pos : pos + BLOCK]
        offset = base + pos
        if header == _ZERO_BLOCK:
            return
        if header[257:262] != b"ustar":
            raise TarFormatError(offset, "not a tar header (no ustar magic)")
        size = _parse_size(header[124:136], offset)
        kind = header[156:157]
        padded = BLOCK + size + (-size % BLOCK)
        if not fill(padded):
            raise TarFormatError(
                offset, f"stream ends inside a member that needs {padded} bytes"
            )
        data_end = pos + BLOCK + size
        if start is None:
            start = offset
        if kind in (b"0", b"\x00", b"7"):
            if long_name is not None:
                name = long_name
            else:
                name = header[0:100].split(b"\x00", 1)[0].decode("utf-8")
                prefix = header[345:500].split(b"\x00", 1)[0]
                if prefix:
                    name = prefix.decode("utf-8") + "/" + name
            data = view[pos + BLOCK : data_end]
            pos += padded
            member_start, long_name, start = start, None, None
            yield Member(name, member_start, size, base + pos - member_start, data)
            continue
        payload = bytes(view[pos + BLOCK : data_end])
        pos += padded
        if kind == b"L":
            long_name = payload.rstrip(b"\x00").decode("utf-8")
        elif kind == b"x":
            long_name = _pax_path(payload) or long_name
        else:  # directories, links, global pax headers: nothing to read
            start = None

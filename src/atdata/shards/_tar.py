"""The POSIX tar layout, written and parsed by hand for speed.

Python's ``tarfile`` costs tens of microseconds per member; a shard of small
samples is nothing but members, so atdata builds ustar headers from a
precomputed template and parses them with slicing. The output is plain ustar
that ``tar``, ``tarfile`` and the ``webdataset`` package read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple

import numpy as np

__all__ = [
    "BLOCK",
    "Member",
    "TarFormatError",
    "end_of_archive",
    "iter_members",
    "member_header",
    "member_spans",
]

BLOCK = 512
RECORD = BLOCK * 20  # tar's default record size; archives are padded to it
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\x00", b"7")  # type flags of regular files
_NAME_HEADERS = (b"L", b"x")  # a long name or pax header belongs to the member after it


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


_HEAD_MODE = bytes(_TEMPLATE[100:124])  # mode, uid, gid
_HEAD_MTIME = bytes(_TEMPLATE[136:148])
_HEAD_TAIL = bytes(_TEMPLATE[156:])  # type flag, magic, version, the rest
_NAME_PAD = [bytes(n) for n in range(101)]


def member_header(name: bytes, size: int) -> bytes:
    """A 512-byte ustar header for a regular file ``name`` of ``size`` bytes.

    Raises:
        ValueError: when the name does not fit in 100 bytes.
    """
    if len(name) > 100:
        raise ValueError(f"member name {name!r} is longer than 100 bytes")
    size_field = b"%011o\x00" % size
    checksum = _TEMPLATE_SUM + sum(name) + sum(size_field)
    # one join of prebuilt pieces: half the cost of patching a template copy
    return b"".join(
        (
            name,
            _NAME_PAD[100 - len(name)],
            _HEAD_MODE,
            size_field,
            _HEAD_MTIME,
            b"%06o\x00 " % checksum,
            _HEAD_TAIL,
        )
    )


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
        if length <= space - pos:  # would not move on: a hostile record, not a pax header
            raise ValueError(f"bad pax record length {length}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8")
        pos += length
    return None


DIRECT_READ = 64 << 10
"""Members at least this big (padded) get a buffer of their own, read straight
into by the stream, so their arrays can be views of it without pinning a chunk
of neighbouring samples in memory."""


def _alloc(size: int) -> memoryview:
    # numpy's empty() skips the zero-fill bytearray(n) would do; the bytes are
    # overwritten by the read anyway.
    return memoryview(np.empty(size, np.uint8))  # type: ignore[arg-type]


TRUSTED_ALLOC = 256 << 20
"""Members up to this size get their buffer before their bytes arrive; bigger ones
grow with what the stream delivers, so a header that lies about its size cannot
make the reader allocate memory the stream does not hold."""


def _read_member(stream: IO[bytes], have: memoryview, size: int) -> memoryview | None:
    """A fresh buffer of ``size`` bytes: ``have``, then the rest from ``stream``.

    None when the stream ends first.
    """
    if size <= TRUSTED_ALLOC:
        own = _alloc(size)
        own[: len(have)] = have
        got = len(have) + _read_into(stream, own[len(have) :])
        return own if got == size else None
    parts = [np.frombuffer(bytes(have), np.uint8)]
    got = len(have)
    while got < size:
        part = _alloc(min(TRUSTED_ALLOC, size - got))
        n = _read_into(stream, part)
        if n < len(part):
            return None
        parts.append(np.asarray(part))
        got += n
    return memoryview(np.concatenate(parts))  # type: ignore[arg-type]


def _read_into(stream: IO[bytes], target: memoryview) -> int:
    """Fill ``target`` from ``stream`` as far as the stream goes; bytes read."""
    readinto = getattr(stream, "readinto", None)
    got, want = 0, len(target)
    while got < want:
        if readinto is not None:
            n = readinto(target[got:])
        else:
            more = stream.read(want - got)
            n = len(more)
            target[got : got + n] = more
        if not n:
            break
        got += n
    return got


def iter_members(stream: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[Member]:
    """Yield the regular files of a tar stream with their byte offsets.

    Small members are views of a shared read-ahead chunk; members of at least
    :data:`DIRECT_READ` bytes are read into a buffer of their own. Every buffer
    is fresh and writable, so ``data`` views stay valid after iteration moves
    on. Directories and global pax headers are skipped; pax ``path`` and GNU
    long names are honoured.

    Raises:
        TarFormatError: on a bad header or a stream that ends inside a member.
    """
    view = _alloc(0)
    pos = end = 0  # valid bytes are view[pos:end]
    base = 0  # stream offset of view[0]
    eof = False
    read_ahead = chunk_size

    def fill(need: int) -> bool:
        """Make ``need`` bytes available at ``pos``; False when the stream ends first."""
        nonlocal view, pos, end, base, eof
        have = end - pos
        if eof:
            return have >= need
        fresh = _alloc(max(read_ahead, need))
        fresh[:have] = view[pos:end]
        got = have + _read_into(stream, fresh[have:])
        if got < len(fresh):
            eof = True
        base += pos
        view, pos, end = fresh, 0, got
        return got >= need

    long_name: str | None = None
    start: int | None = None
    while True:
        if end - pos < BLOCK and not fill(BLOCK):
            if end == pos:
                raise TarFormatError(
                    base + pos, "stream ends without the end-of-archive blocks (truncated?)"
                )
            raise TarFormatError(base + pos, "stream ends inside a tar header")
        header = bytes(view[pos : pos + BLOCK])
        offset = base + pos
        if header == _ZERO_BLOCK:
            return
        if header[257:262] != b"ustar":
            raise TarFormatError(offset, "not a tar header (no ustar magic)")
        try:  # the usual octal field, "%011o\0"; anything else takes the slow path
            size = int(header[124:135], 8) if header[135] == 0 else -1
        except ValueError:
            size = -1
        if size < 0:
            size = _parse_size(header[124:136], offset)
        kind = header[156:157]
        padded = size + (-size % BLOCK)
        if start is None:
            start = offset
        pos += BLOCK
        if end - pos >= padded and padded < DIRECT_READ:
            data = view[pos : pos + size]
            pos += padded
            read_ahead = chunk_size
        elif padded >= DIRECT_READ:
            have = min(end - pos, padded)
            own = _read_member(stream, view[pos : pos + have], padded)
            if own is None:
                raise TarFormatError(
                    offset, f"stream ends inside a member that needs {BLOCK + padded} bytes"
                )
            if have < padded:
                # The chunk is used up; carry on after this member. Big members
                # tend to follow big members, so read just the next header.
                view, pos, end = _alloc(0), 0, 0
                base = offset + BLOCK + padded
                read_ahead = BLOCK
            else:
                pos += padded
            data = own[:size]
        else:
            if not fill(padded):
                raise TarFormatError(
                    offset, f"stream ends inside a member that needs {BLOCK + padded} bytes"
                )
            data = view[pos : pos + size]
            pos += padded
            read_ahead = chunk_size
        if kind in _REGULAR:
            if long_name is not None:
                name = long_name
            else:
                try:
                    end_of_name = header.find(0, 0, 100)
                    name = header[: end_of_name if end_of_name >= 0 else 100].decode("utf-8")
                    if header[345]:  # a ustar prefix (folders of long paths)
                        prefix = header[345:500].split(b"\x00", 1)[0]
                        name = prefix.decode("utf-8") + "/" + name
                except UnicodeDecodeError:
                    raise TarFormatError(offset, "member name is not UTF-8") from None
            member_start, long_name, start = start, None, None
            yield Member(name, member_start, size, base + pos - member_start, data)
            continue
        payload = bytes(data)
        try:
            if kind == b"L":
                long_name = payload.rstrip(b"\x00").decode("utf-8")
            elif kind == b"x":
                long_name = _pax_path(payload) or long_name
            else:  # directories, links, global pax headers: nothing to read
                start = None
        except ValueError:  # includes UnicodeDecodeError
            raise TarFormatError(offset, "unreadable long-name or pax header") from None


def member_spans(stream: IO[bytes], *, seek: bool = False) -> Iterator[tuple[int, int]]:
    """``(offset, span)`` of each regular file, as :func:`iter_members` counts them,
    from the headers alone: the data is skipped — sought over with ``seek=True``
    (a local file), so a shard of big samples is scanned in a few small reads.

    Raises:
        TarFormatError: on a bad header or a stream that ends inside the archive.
    """
    pos = 0
    start: int | None = None
    while True:
        header = stream.read(BLOCK)
        if len(header) < BLOCK:
            raise TarFormatError(pos, "stream ends without the end-of-archive blocks (truncated?)")
        if header == _ZERO_BLOCK:
            return
        if header[257:262] != b"ustar":
            raise TarFormatError(pos, "not a tar header (no ustar magic)")
        size = _parse_size(header[124:136], pos)
        padded = size + (-size % BLOCK)
        kind = header[156:157]
        if start is None:
            start = pos
        pos += BLOCK + padded
        if kind in _REGULAR:
            yield start, pos - start
            start = None
        elif kind not in _NAME_HEADERS:
            start = None
        if seek:
            try:
                stream.seek(padded, 1)
            except (OverflowError, ValueError, OSError):  # a size no stream holds
                raise TarFormatError(
                    pos - padded - BLOCK, f"a member claims {size} bytes"
                ) from None
        else:
            while padded > 0:
                skipped = len(stream.read(min(padded, 1 << 20)))
                if not skipped:
                    break  # the next header read reports where the stream ended
                padded -= skipped

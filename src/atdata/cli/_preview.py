"""``atdata preview``: the first samples of a dataset, rendered readably.

Encoded array fields (PNG, JPEG, zstd) are decoded from the shard alone (they
say how they are encoded) and shown by dtype and shape with their encoding.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from atdata.cli._output import console
from atdata.cli._resolve import resolve

if TYPE_CHECKING:
    from atdata.shards.reader import ErrorHandler

__all__ = ["describe_value", "gather", "json_value", "render", "type_label"]

_ARRAY_VALUES = 6  # array elements shown
_LIST_ITEMS = 5  # list items shown


def gather(
    target: str,
    *,
    limit: int = 5,
    fields: Sequence[str] | None = None,
    width: int = 80,
    skip_corrupt: bool = False,
) -> dict[str, Any]:
    """Read the first ``limit`` samples (streaming only as far as needed).

    Args:
        target: the dataset.
        limit: samples to show.
        fields: the fields to show (default: all).
        width: where strings and lists are cut.
        skip_corrupt: skip samples that do not decode (and the rest of a shard
            whose tar is damaged) instead of failing.

    Returns:
        ``{"url", "num_shards", "samples": [{"key", "shard", "offset", "fields":
        {name: {...}}}], "skipped": [{"shard", "offset", "key", "reason"}]}``;
        each field has ``type``, ``text`` (what a human sees) and ``value`` (JSON:
        strings whole, arrays summarised by shape, dtype and a few values), and
        an encoded array field its ``encoding`` (``"png"``, ``"jpeg"``, ``"zstd"``).

    Raises:
        SchemaError: ``fields`` names a field the samples do not have.
        ShardCorruptError: a sample does not decode (without ``skip_corrupt``).
    """
    from atdata.errors import ShardCorruptError

    resolved = resolve(target)
    samples = []
    skipped: list[ShardCorruptError] = []
    read = _samples(resolved.shards, skipped.append if skip_corrupt else "raise")
    try:
        first = list(itertools.islice(read, limit))
    except ShardCorruptError as exc:
        exc.cli_hint = _SKIP_HINT  # this command can skip them
        raise
    for shard, offset, (sample, encodings) in first:
        names = list(sample.keys())
        chosen = names if fields is None else _check_fields(fields, names, sample.__key__)
        described: dict[str, dict[str, Any]] = {}
        for name in chosen:
            described[name] = {
                "type": type_label(sample[name]),
                "text": describe_value(sample[name], width),
                "value": json_value(sample[name]),
            }
            if name in encodings:
                described[name]["encoding"] = encodings[name]
        samples.append(
            {"key": sample.__key__, "shard": shard, "offset": offset, "fields": described}
        )
    return {
        "url": target,
        "num_shards": len(resolved.shards),
        "samples": samples,
        "skipped": [
            {"shard": e.url, "offset": e.offset, "key": e.key, "reason": e.reason} for e in skipped
        ],
    }


_SKIP_HINT = "Rewrite the shard, or rerun with --skip-corrupt to skip bad samples."


def _samples(
    shards: Sequence[str], handler: ErrorHandler
) -> Iterator[tuple[str, int, tuple[Any, dict[str, str]]]]:
    from atdata.shards import iter_shard

    for shard in shards:
        for decoded, offset, _span in iter_shard(shard, _decode, handler=handler):
            yield shard, offset, decoded


def _decode(data: bytes | memoryview, key: str | None) -> tuple[Any, dict[str, str]]:
    """A ``DictSample`` and the encoding of each encoded field (msgpack extension values)."""
    import msgspec

    from atdata._encodings import encoding_name
    from atdata.errors import SchemaError
    from atdata.sample import DictSample

    raw = msgspec.msgpack.decode(data)
    if not isinstance(raw, dict):
        raise SchemaError(f"sample {key!r} is not a msgpack map")
    encodings = {
        name: encoding_name(value.code)
        for name, value in raw.items()
        if isinstance(value, msgspec.msgpack.Ext)
    }
    return DictSample(raw, key), encodings


def _check_fields(wanted: Sequence[str], names: list[str], key: str | None) -> list[str]:
    from atdata.errors import SchemaError, closest

    for name in wanted:
        if name not in names:
            hint = closest(name, names)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise SchemaError(
                f"Sample {key!r} has no field {name!r}.{did_you_mean} "
                f"Its fields: {', '.join(names)}."
            )
    return list(wanted)


def render(result: Mapping[str, Any]) -> None:
    """Print each sample as a small table: field, type, value."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = console()
    samples = result["samples"]
    skipped = result.get("skipped") or []
    if skipped:
        first = skipped[0]
        out.print(
            Text(
                f"Skipped {len(skipped)} corrupt sample{'s' if len(skipped) != 1 else ''} "
                f"(first: {first['shard']} at byte {first['offset']}: {first['reason']}).",
                style="yellow",
            )
        )
    if not samples:
        out.print(Text(f"No samples in {result['url']}.", style="yellow"))
        return
    for sample in samples:
        title = Text.assemble(
            (str(sample["key"]), "bold cyan"),
            (f"  {sample['shard']} @ byte {sample['offset']}", "dim"),
        )
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_header=False,
            pad_edge=False,
            expand=False,
        )
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("type", style="magenta", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, field in sample["fields"].items():
            kind = (
                f"{field['type']} ({field['encoding']})" if "encoding" in field else field["type"]
            )
            table.add_row(name, kind, Text(field["text"]))
        out.print(table)
    shown = len(samples)
    out.print(Text(f"{shown} sample{'s' if shown != 1 else ''} shown", style="dim"))


# -- values ------------------------------------------------------------------------


def type_label(value: Any) -> str:
    """A short type name: ``ndarray``, ``str``, ``list[str]``, ``dict[str, float]``..."""
    if _is_array(value):
        return "ndarray"
    if isinstance(value, list):
        inner = {type_label(v) for v in value[:_LIST_ITEMS]}
        return f"list[{inner.pop()}]" if len(inner) == 1 else "list"
    if isinstance(value, dict):
        inner = {type_label(v) for v in itertools.islice(value.values(), _LIST_ITEMS)}
        return f"dict[str, {inner.pop()}]" if len(inner) == 1 else "dict"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if value is None:
        return "None"
    return type(value).__name__


def describe_value(value: Any, width: int = 80) -> str:
    """One line for a human: arrays by dtype, shape and a few values; long text cut.

    Example:
        >>> describe_value("x" * 100, width=10)
        "'xxxxxxxxx…' (100 chars)"
    """
    if _is_array(value):
        return _describe_array(value)
    if isinstance(value, str):
        if len(value) <= width:
            return repr(value)
        quoted = repr(value[: max(width - 1, 1)])
        return f"{quoted[:-1]}…{quoted[-1]} ({len(value):,} chars)"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        head = repr(data[:16]) + ("…" if len(data) > 16 else "")
        return f"{len(data):,} bytes {head}"
    if isinstance(value, list):
        parts = [describe_value(v, max(width // 4, 8)) for v in value[:_LIST_ITEMS]]
        text = "[" + ", ".join(parts)
        if len(value) > _LIST_ITEMS:
            text += f", … {len(value) - _LIST_ITEMS:,} more"
        text += "]"
        return _cut(text, width) + (f" ({len(value):,} items)" if len(value) > _LIST_ITEMS else "")
    if isinstance(value, dict):
        items = list(itertools.islice(value.items(), _LIST_ITEMS))
        parts = [f"{k}: {describe_value(v, max(width // 4, 8))}" for k, v in items]
        text = "{" + ", ".join(parts) + (", …" if len(value) > _LIST_ITEMS else "") + "}"
        return _cut(text, width) + (f" ({len(value):,} keys)" if len(value) > _LIST_ITEMS else "")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return _number(value)
    return repr(value)


def json_value(value: Any) -> Any:
    """The value as JSON: arrays (and bytes) summarised, everything else whole."""
    if _is_array(value):
        return {
            "ndarray": {
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "values": [_plain(x) for x in value.ravel()[:_ARRAY_VALUES].tolist()],
            }
        }
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"bytes": {"size": len(data), "head_hex": data[:16].hex()}}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return _plain(value)


def _is_array(value: Any) -> bool:
    return type(value).__name__ == "ndarray" and hasattr(value, "dtype")


def _describe_array(array: Any) -> str:
    shape = "×".join(str(n) for n in array.shape) or "scalar"
    values = array.ravel()[:_ARRAY_VALUES].tolist()
    head = [_number(x) if isinstance(x, float) else repr(x) for x in values]
    more = ", …" if array.size > _ARRAY_VALUES else ""
    return f"{array.dtype} {shape}  [{', '.join(head)}{more}]"


def _number(x: float) -> str:
    return f"{x:.6g}"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, complex):
        return str(value)
    return value


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

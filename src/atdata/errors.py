"""One exception hierarchy for atdata; every error says what is wrong and what to do.

The tree, drawn once so it can be read at a glance::

    AtdataError
    ├── MissingDependencyError          an optional extra is not installed
    ├── StorageError                    a URL cannot be read or written
    │   ├── UnreadableURLError
    │   └── CredentialsError
    ├── SchemaError                     a sample type or a field is unusable
    │   ├── UnsupportedFieldTypeError
    │   ├── SchemaMismatchError
    │   └── LensNotFoundError
    ├── ShardError                      a tar shard is damaged or misused
    │   ├── ShardCorruptError
    │   └── SampleNotFoundError
    ├── ManifestError                   a manifest is missing or unreadable
    ├── QueryError                      a query names a field that is not there
    ├── CatalogError                    the local index (SQLite) is unusable
    │   └── DatasetNotFoundError
    ├── ProcessingError                 a map job failed
    │   ├── PartialFailureError
    │   └── WorkerLostError
    ├── PipelineError                   an event or trigger is unusable
    │   ├── InvalidEventError           a request body is not a usable event or job
    │   ├── LedgerError                 the pipeline's event ledger is unusable
    │   └── JobConflictError            a job for that output is already running
    └── AtmosphereError                 the AT Protocol network refused or failed a request
        ├── AtmosphereAuthError         wrong handle or password, or no session
        ├── AtmosphereConnectionError   the PDS (or PLC) cannot be reached
        ├── RecordNotFoundError         no such handle, DID, record or label
        ├── RecordConflictError         a record exists with other content (a schema version)
        └── InvalidRecordError          a record breaks a lexicon rule (floats, sizes, keys)

Every class is defined here and exported at the top level (``atdata.ShardCorruptError``),
whichever layer raises it, so ``except atdata.errors.AtmosphereAuthError`` works without
importing the optional layer that raises it.

Context (URL, key, byte offset, field) is kept in attributes *and* in ``str()``.
Advice that names a Python argument (``handler='skip'``) has a twin for the
``atdata`` command, which shows :meth:`AtdataError.cli_message` instead.

Example:
    >>> try:
    ...     atdata.Dataset[ImageSample]("data/no-such-shard.tar").head(1)
    ... except atdata.StorageError as e:      # atdata.AtdataError catches every one
    ...     type(e).__name__, e.url
    ('UnreadableURLError', 'data/no-such-shard.tar')
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any, Self

__all__ = [
    "AtdataError",
    "AtmosphereAuthError",
    "AtmosphereConnectionError",
    "AtmosphereError",
    "CatalogError",
    "CredentialsError",
    "DatasetNotFoundError",
    "InvalidEventError",
    "InvalidRecordError",
    "JobConflictError",
    "LedgerError",
    "LensNotFoundError",
    "ManifestError",
    "MissingDependencyError",
    "PartialFailureError",
    "PipelineError",
    "ProcessingError",
    "QueryError",
    "RecordConflictError",
    "RecordNotFoundError",
    "SampleNotFoundError",
    "SchemaError",
    "SchemaMismatchError",
    "ShardCorruptError",
    "ShardError",
    "StorageError",
    "UnreadableURLError",
    "UnsupportedFieldTypeError",
    "WorkerLostError",
    "closest",
]


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names from ``candidates`` that look like ``name``.

    Example:
        >>> closest("lable", ["label", "confidence", "image"])
        ['label']
    """
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    matches = closest(name, candidates)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


class AtdataError(Exception):
    """Root of every error atdata raises on purpose.

    An error whose advice names a Python argument (``handler='skip'``,
    ``overwrite=True``) also says it in the terms of the ``atdata`` command:
    ``hint`` is that advice as the message words it, ``cli_hint`` the same
    advice for the command (an option, a command to run), and
    :meth:`cli_message` the message the command shows.

    Example:
        >>> err = CatalogError("'x' exists. Pass overwrite=True.").with_cli_hint(
        ...     "Pass overwrite=True.", "Pass --overwrite."
        ... )
        >>> str(err), err.cli_message()
        ("'x' exists. Pass overwrite=True.", "'x' exists. Pass --overwrite.")
    """

    hint: str | None = None
    """The advice the message gives that only a Python caller can follow."""
    cli_hint: str | None = None
    """The same advice for the ``atdata`` command; None when the message suits both."""

    def with_cli_hint(self, hint: str, cli_hint: str) -> Self:
        """Say the message's advice ``hint`` as ``cli_hint`` on the command line; returns self.

        Example:
            >>> ShardError("Bad. Pass x=1.").with_cli_hint("Pass x=1.", "Pass --x 1.").cli_hint
            'Pass --x 1.'
        """
        self.hint = hint
        self.cli_hint = cli_hint
        return self

    def cli_message(self) -> str:
        """The message as the ``atdata`` command shows it: the CLI's advice for the Python one.

        Example:
            >>> ShardError("Bad. Pass x=1.").with_cli_hint("Pass x=1.", "Pass --x 1.").cli_message()
            'Bad. Pass --x 1.'
        """
        text = str(self)
        if self.hint is None or self.cli_hint is None:
            return text
        return text.replace(self.hint, self.cli_hint)


class MissingDependencyError(AtdataError, ImportError):
    """An optional dependency is needed for this feature but not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Run: pip install 'atdata[{extra}]'"
        )


# -- storage ------------------------------------------------------------------


class StorageError(AtdataError):
    """A URL could not be read, listed or written."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class UnreadableURLError(StorageError):
    """A URL matched nothing, or its scheme is not supported."""


class CredentialsError(StorageError):
    """An object store refused our credentials or none were found."""


# -- schema -------------------------------------------------------------------


class SchemaError(AtdataError):
    """A sample type, or one of its fields, cannot be used."""


class UnsupportedFieldTypeError(SchemaError, TypeError):
    """A field's annotation is not a type atdata can store safely."""

    def __init__(self, type_name: str, field: str, annotation: Any, reason: str = "") -> None:
        self.type_name = type_name
        self.field = field
        self.annotation = annotation
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{type_name}.{field}: cannot store a field of type {annotation!r}{why}. "
            "Supported: str, int, float, bool, bytes, datetime, enums, NDArray, "
            "and lists, dicts and Optionals of those."
        )


class SchemaMismatchError(SchemaError):
    """Samples in a shard do not have the fields the requested type expects."""

    def __init__(
        self,
        type_name: str,
        *,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        retyped: Sequence[str] = (),
        url: str | None = None,
        key: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.retyped = list(retyped)
        self.url = url
        self.key = key
        hint = (
            "Read them with the type they were written with (see `atdata schema show URL`), "
            "or as DictSample."
        )
        parts = []
        if self.missing:
            parts.append("missing fields " + ", ".join(self.missing))
        if self.unexpected:
            parts.append("unexpected fields " + ", ".join(self.unexpected))
        if self.retyped:
            parts.append("fields of another type " + ", ".join(self.retyped))
        where = ""
        if url:
            where = f" in {url}" + (f" at key {key!r}" if key else "")
        super().__init__(f"Samples{where} do not match {type_name}: {'; '.join(parts)}. {hint}")
        self.with_cli_hint(
            hint,
            "Give the type they were written with as --type (see `atdata schema show URL`), "
            "or leave --type out to use the schema the manifests record, or one inferred from "
            "the samples.",
        )


class LensNotFoundError(SchemaError):
    """No lens (or chain of lenses) converts the source type to the view type."""

    def __init__(self, source: str, view: str, available: Sequence[str]) -> None:
        self.source = source
        self.view = view
        self.available = list(available)
        lines = [f"No lens transforms {source} → {view}", ""]
        if self.available:
            lines.append(f"Available lenses from {source}:")
            lines.extend(f"  - {a}" for a in self.available)
        else:
            lines.append(f"No lenses from {source} are registered.")
        fn = f"{_snake(source)}_to_{_snake(view)}"
        lines += [
            "",
            "Did you mean to define:",
            "  @atdata.lens",
            f"  def {fn}(a: {source}) -> {view}:",
            f"      return {view}(...)",
        ]
        super().__init__("\n".join(lines))


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# -- shards -------------------------------------------------------------------


class ShardError(AtdataError):
    """A tar shard is damaged or used the wrong way."""


class ShardCorruptError(ShardError):
    """A shard is truncated or does not parse as a tar of msgpack samples."""

    def __init__(self, url: str, offset: int, reason: str, key: str | None = None) -> None:
        self.url = url
        self.offset = offset
        self.reason = reason
        self.key = key
        at_key = f" (sample {key!r})" if key else ""
        hint = "Rewrite the shard, or read with handler='skip' to skip bad samples."
        super().__init__(f"Shard {url} is corrupt at byte {offset}{at_key}: {reason}. {hint}")
        self.with_cli_hint(hint, "Rewrite the shard, or leave it out of the dataset.")


class SampleNotFoundError(ShardError, KeyError):
    """No sample with the given key exists in the dataset."""

    def __init__(self, key: str, where: str, known: Iterable[str] = ()) -> None:
        self.key = key
        self.where = where
        super().__init__(f"No sample with key {key!r} in {where}.{_did_you_mean(key, known)}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


# -- manifests and queries ------------------------------------------------------


class ManifestError(AtdataError):
    """A manifest is missing, unreadable, or of an unknown format version."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class QueryError(AtdataError):
    """A query is malformed or names a field that does not exist."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)

    @classmethod
    def unknown_field(cls, field: str, known: Iterable[str]) -> QueryError:
        """The error for a misspelled field, suggesting the closest real ones.

        Example:
            >>> print(QueryError.unknown_field("lable", ["label"]))
            Unknown field 'lable' in query. Did you mean 'label'? Queryable fields: label.
        """
        known = sorted(known)
        return cls(
            f"Unknown field {field!r} in query.{_did_you_mean(field, known)} "
            f"Queryable fields: {', '.join(known) or '(none)'}.",
            field=field,
        )


# -- local index ----------------------------------------------------------------


class CatalogError(AtdataError):
    """The local index cannot be read or written."""


class DatasetNotFoundError(CatalogError, LookupError):
    """A dataset name is not registered."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        hint = _did_you_mean(name, known)
        super().__init__(
            f"No dataset named {name!r} is registered.{hint} "
            "List registered datasets with `atdata ls`."
        )


# -- processing and pipelines -----------------------------------------------------


class ProcessingError(AtdataError):
    """A processing job could not run or failed."""


class PartialFailureError(ProcessingError):
    """Some shards of a map job failed after their retries; the others succeeded.

    Attributes:
        succeeded_shards: input shard URLs whose output is committed.
        failed_shards: input shard URLs that failed.
        errors: input shard URL -> the last error message for it.
    """

    def __init__(
        self,
        succeeded_shards: Sequence[str],
        failed_shards: Sequence[str],
        errors: dict[str, str],
        *,
        output_prefix: str | None = None,
    ) -> None:
        self.succeeded_shards = list(succeeded_shards)
        self.failed_shards = list(failed_shards)
        self.errors = dict(errors)
        self.output_prefix = output_prefix
        first = next(iter(self.errors.items()), None)
        detail = f" First error ({first[0]}): {first[1].strip().splitlines()[-1]}" if first else ""
        super().__init__(
            f"{len(self.failed_shards)} of "
            f"{len(self.failed_shards) + len(self.succeeded_shards)} shards failed.{detail} "
            "Fix the cause, then rerun with shards=e.failed_shards, retry=True."
        )


class WorkerLostError(ProcessingError):
    """A worker process died (killed, out of memory) or hit its timeout while running a task.

    Attributes:
        task_id: the shard task it was running.
        exitcode: the process's exit code (negative: the signal that killed it).
    """

    def __init__(self, message: str, *, task_id: str, exitcode: int | None = None) -> None:
        self.task_id = task_id
        self.exitcode = exitcode
        super().__init__(message)


class PipelineError(AtdataError):
    """A pipeline trigger, event or dispatcher request is unusable."""


class InvalidEventError(PipelineError, ValueError):
    """A request body is not a usable object-storage event (or job request).

    Attributes:
        reason: one line saying what is wrong, safe to send back to the caller.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class JobConflictError(PipelineError):
    """A job for this output prefix is already running in this dispatcher."""


class LedgerError(PipelineError):
    """The ledger that makes pipeline events run once cannot be read or written."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


# -- the AT Protocol network ------------------------------------------------------


class AtmosphereError(AtdataError):
    """A request to the AT Protocol network failed.

    Attributes:
        service: the PDS (or PLC) URL involved, when known.
    """

    def __init__(self, message: str, *, service: str | None = None) -> None:
        self.service = service
        super().__init__(message)


class AtmosphereAuthError(AtmosphereError):
    """The PDS refused the handle and password (or the session expired)."""


class AtmosphereConnectionError(AtmosphereError):
    """The PDS or PLC could not be reached."""


class RecordNotFoundError(AtmosphereError, LookupError):
    """A handle, DID, record or label does not exist.

    Attributes:
        ref: what was looked up (``@handle/name``, an ``at://`` URI, a handle).
    """

    def __init__(self, message: str, *, ref: str, service: str | None = None) -> None:
        self.ref = ref
        super().__init__(message, service=service)

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class RecordConflictError(AtmosphereError):
    """A record with the same key exists with other content."""


class InvalidRecordError(AtmosphereError, ValueError):
    """A record would break a lexicon rule (a float, a too-long string, a bad key).

    Attributes:
        path: where in the record, e.g. ``$.size.bytes``.
    """

    def __init__(self, message: str, *, path: str = "$") -> None:
        self.path = path
        super().__init__(message)

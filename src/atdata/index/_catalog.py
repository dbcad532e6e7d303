"""The local catalog: named datasets and versioned schemas in one SQLite file.

Several processes may use the same index at once. The database runs in WAL
mode (readers never block the writer), waits up to :data:`BUSY_TIMEOUT_S`
seconds for a lock instead of failing at once, and every write happens in a
``BEGIN IMMEDIATE`` transaction, so two writers queue up instead of both
reading, both writing, and one losing its write.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from atdata._semver import next_version, normalize_version, version_key
from atdata.errors import CatalogError, DatasetNotFoundError, SchemaError, closest

if TYPE_CHECKING:
    from atdata.shards import ErrorHandler, ShardSet


__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_FORMAT_VERSION",
    "LOCAL_PREFIX",
    "Catalog",
    "DatasetRecord",
    "SchemaRecord",
    "default_index_path",
    "resolve_local",
]

#: ``PRAGMA user_version`` of the databases this code writes. Bump it (and add
#: a migration in ``_migrate``) whenever the tables change.
DB_FORMAT_VERSION = 1

#: How long a write waits for another process's write before giving up.
BUSY_TIMEOUT_S = 30.0

LOCAL_PREFIX = "@local/"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# Keys of a schema dict that say where the Python class lives, not what the
# samples look like; moving a class to another module is not a new definition.
_NON_DEFINING_KEYS = frozenset({"module"})

# Schema.diff entry -> how the refusal message words it
_CHANGES = {
    "added": "added",
    "removed": "removed",
    "retyped": "retyped",
    "manifest": "changed the manifest kind of",
    "encoding": "changed the array encoding of",
}

_TABLES = """
CREATE TABLE IF NOT EXISTS schemas (
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS datasets (
    name            TEXT PRIMARY KEY,
    urls            TEXT NOT NULL,
    schema_name     TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    FOREIGN KEY (schema_name, schema_version) REFERENCES schemas (name, version)
);
"""

_SELECT_DATASET = """
SELECT d.name, d.urls, s.definition, d.schema_name, d.schema_version,
       d.description, d.metadata, d.created_at, d.updated_at
FROM datasets AS d
JOIN schemas AS s ON s.name = d.schema_name AND s.version = d.schema_version
"""


def default_index_path() -> Path:
    """Return where the index lives: ``$ATDATA_HOME/index.db``, else ``~/.atdata/index.db``.

    The environment is read on every call, so setting ``ATDATA_HOME`` later
    (in a test, say) takes effect for catalogs opened afterwards.

    Example:
        >>> default_index_path().name
        'index.db'
    """
    home = os.environ.get("ATDATA_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".atdata"
    return base / "index.db"


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """One registered version of a sample type's schema.

    Attributes:
        name: the sample type's name, e.g. ``"ImageSample"``.
        version: its semantic version, without a leading ``v``.
        schema: the schema as a JSON-able dict (``name``, ``version``,
            ``fields``, ...).
        created_at: when this version was first registered (UTC).

    Example:
        >>> record = cat.get_schema("Digit", "1.9.0")
        >>> record.name, record.version, record.schema["fields"]
        ('Digit', '1.9.0', [])
    """

    name: str
    version: str
    schema: dict[str, Any] = field(hash=False)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """A named dataset in the local index.

    Attributes:
        name: the dataset's name; load it as ``@local/<name>``.
        urls: shard URLs or patterns (brace patterns and globs are kept as given).
        schema: the schema of its samples as a JSON-able dict.
        schema_name: ``schema["name"]``.
        schema_version: ``schema["version"]``, normalised (no leading ``v``).
        description: free text.
        metadata: any JSON-able extra information.
        created_at: when the name was first registered (UTC).
        updated_at: when it was last registered or overwritten (UTC).

    Example:
        >>> record = cat.get_dataset("@local/mnist-train")
        >>> record.uri, record.urls, record.schema_version
        ('@local/mnist-train', ['mnist-{0..9}.tar'], '1.0.0')
    """

    name: str
    urls: list[str] = field(hash=False)
    schema: dict[str, Any] = field(hash=False)
    schema_name: str
    schema_version: str
    description: str
    metadata: dict[str, Any] = field(hash=False)
    created_at: datetime
    updated_at: datetime

    @property
    def uri(self) -> str:
        """The name to load this dataset by, e.g. ``"@local/mnist"``."""
        return LOCAL_PREFIX + self.name


class Catalog:
    """The local index of named datasets and versioned schemas (SQLite).

    The connection opens on first use. A catalog may be shared between threads;
    other processes should open their own :class:`Catalog` on the same path.

    Args:
        path: the database file (or a folder to hold ``index.db``). ``None``
            means :func:`default_index_path`, read from the environment now.
            ``":memory:"`` gives a private in-memory index.

    Example:
        >>> with Catalog(":memory:") as cat:
        ...     schema = {"name": "Digit", "version": "1.0.0", "fields": []}
        ...     rec = cat.register_dataset("mnist", ["mnist-{0..9}.tar"], schema)
        ...     cat.get_dataset("@local/mnist").urls
        ['mnist-{0..9}.tar']
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            resolved: str = str(default_index_path())
        else:
            resolved = os.fspath(path)
            if resolved != ":memory:" and Path(resolved).is_dir():
                resolved = str(Path(resolved) / "index.db")
        self._path = resolved
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file this catalog reads and writes.

        Example:
            >>> atdata.Catalog(tmp).path.endswith("index.db")    # a folder holds index.db
            True
        """
        return self._path

    def __repr__(self) -> str:
        return f"Catalog({self._path!r})"

    def __reduce__(self) -> tuple[type[Catalog], tuple[str]]:
        # A connection cannot cross a process boundary; the path can.
        return (type(self), (self._path,))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. The catalog reopens it if used again.

        Example:
            >>> cat.close()
            >>> cat.get_dataset("@local/my-dataset").name    # reopened
            'my-dataset'
        """
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._path != ":memory:":
            folder = Path(self._path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(
                    f"Cannot create the folder {folder} for the local index: {exc}. "
                    "Set ATDATA_HOME to a writable folder."
                ) from exc
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_format(conn)
            _enable_wal(conn)
            self._migrate(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self._error("open", exc) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn
        return conn

    def _check_format(self, conn: sqlite3.Connection) -> int:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
        if found > DB_FORMAT_VERSION:
            raise CatalogError(
                f"The local index {self._path} has format version {found}, but this "
                f"atdata only knows up to version {DB_FORMAT_VERSION}; a newer atdata "
                "wrote it. Upgrade atdata (pip install -U atdata), or set ATDATA_HOME "
                "to use a separate index."
            )
        return int(found)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Checked again under the write lock: another process may have created
        # (or upgraded) the tables since we first looked.
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._check_format(conn)
            if found < DB_FORMAT_VERSION:
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {DB_FORMAT_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _error(self, action: str, exc: sqlite3.Error) -> CatalogError:
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            hint = (
                f"Another process held the index for over {BUSY_TIMEOUT_S:g} s; "
                "retry when it has finished."
            )
        elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            hint = (
                "The file is not a valid atdata index or is damaged. Move it aside "
                "(a new index is created on next use), or set ATDATA_HOME to use another."
            )
        elif "readonly" in lowered or "unable to open" in lowered or "disk" in lowered:
            hint = (
                "Check that the file and its folder are writable and the disk is not "
                "full, or set ATDATA_HOME to a writable folder."
            )
        else:
            hint = "Set ATDATA_HOME to use another index if this one is unusable."
        return CatalogError(f"Cannot {action} the local index {self._path}: {text}. {hint}")

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(action, exc) from exc
                raise

    # -- schemas ---------------------------------------------------------------

    def register_schema(self, schema: Mapping[str, Any]) -> SchemaRecord:
        """Register a schema under its ``name`` and ``version``.

        Registering the same definition again is a no-op. A *different*
        definition under a name and version that already exist is refused:
        shards written with the old definition would no longer match it.

        Args:
            schema: the JSON-able dict of a sample type's schema; ``name`` and
                ``version`` are required, everything else is stored as given.

        Returns:
            The stored record (the first one, if it was already registered).

        Raises:
            SchemaError: ``name`` or ``version`` is missing or malformed, or
                this name and version already hold another definition.
            CatalogError: the index cannot be written.

        Example:
            >>> digit = {"name": "Digit", "version": "v1.0.0", "fields": []}
            >>> cat.register_schema(digit).version
            '1.0.0'
        """
        name, version, clean = _validate_schema(schema)
        with self._write("register a schema in") as conn:
            return self._register_schema(conn, name, version, clean)

    def _register_schema(
        self, conn: sqlite3.Connection, name: str, version: str, schema: dict[str, Any]
    ) -> SchemaRecord:
        row = conn.execute(
            "SELECT definition, created_at FROM schemas WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is None:
            now = _now()
            conn.execute(
                "INSERT INTO schemas (name, version, definition, created_at) VALUES (?, ?, ?, ?)",
                (name, version, _dumps(schema, "schema"), _format_time(now)),
            )
            return SchemaRecord(name, version, schema, now)
        stored = json.loads(row[0])
        if _definition(stored) != _definition(schema):
            change, needed = _describe_change(stored, schema)
            hint = f"bump it, e.g. @atdata.packable(version={needed!r})."
            raise SchemaError(
                f"Schema {name!r} version {version} is already registered with a "
                f"different definition ({change}). A changed schema needs a new version: {hint}"
            ).with_cli_hint(
                hint,
                f"give the sample type version {needed} and rebuild the manifests with it "
                "(atdata manifest build URL --force --type MODULE:CLASS).",
            )
        if stored != schema:
            # Same definition, the class moved (e.g. from __main__ to a module):
            # remember where it lives now so it can be imported again.
            conn.execute(
                "UPDATE schemas SET definition = ? WHERE name = ? AND version = ?",
                (_dumps(schema, "schema"), name, version),
            )
        return SchemaRecord(name, version, schema, _parse_time(row[1]))

    def get_schema(self, name: str, version: str | None = None) -> SchemaRecord:
        """Return one version of a schema; the highest one if ``version`` is None.

        Versions compare as semantic versions (``1.10.0`` is above ``1.9.0``),
        and ``"v1.1.0"`` means ``"1.1.0"``.

        Args:
            name: the schema (sample type) name.
            version: the version to fetch, or ``None`` for the latest.

        Returns:
            The schema record.

        Raises:
            SchemaError: no schema has that name, or it has no such version.

        Example:
            >>> cat.get_schema("Digit").version
            '1.10.0'
        """
        wanted = None if version is None else normalize_version(version, name)
        with self._read("read schemas from") as conn:
            rows = conn.execute(
                "SELECT version, definition, created_at FROM schemas WHERE name = ?",
                (name,),
            ).fetchall()
            if not rows:
                known = [r[0] for r in conn.execute("SELECT DISTINCT name FROM schemas")]
        if not rows:
            raise _unknown_schema(name, known)
        if wanted is None:
            row = max(rows, key=lambda r: version_key(r[0]))
        else:
            matching = [r for r in rows if r[0] == wanted]
            if not matching:
                versions = sorted((r[0] for r in rows), key=version_key)
                hint = closest(wanted, versions)
                did_you_mean = (
                    (" Did you mean " + " or ".join(map(repr, hint)) + "?") if hint else ""
                )
                raise SchemaError(
                    f"Schema {name!r} has no version {wanted!r}.{did_you_mean} "
                    f"Registered versions: {', '.join(versions)}."
                )
            row = matching[0]
        return SchemaRecord(name, row[0], json.loads(row[1]), _parse_time(row[2]))

    def list_schemas(self) -> list[SchemaRecord]:
        """Return every registered schema version, by name, then by semantic version.

        Example:
            >>> [(s.name, s.version) for s in cat.list_schemas()]
            [('Digit', '1.0.0'), ('Digit', '1.9.0'), ('Digit', '1.10.0'), ('ImageSample', '1.0.0')]
        """
        with self._read("read schemas from") as conn:
            rows = conn.execute(
                "SELECT name, version, definition, created_at FROM schemas"
            ).fetchall()
        rows.sort(key=lambda r: (r[0], version_key(r[1])))
        return [SchemaRecord(r[0], r[1], json.loads(r[2]), _parse_time(r[3])) for r in rows]

    def schema_versions(self, name: str) -> list[str]:
        """Return the registered versions of a schema, lowest to highest.

        Raises:
            SchemaError: no schema has that name.

        Example:
            >>> cat.schema_versions("Digit")
            ['1.0.0', '1.9.0', '1.10.0']
        """
        with self._read("read schemas from") as conn:
            versions = [
                r[0] for r in conn.execute("SELECT version FROM schemas WHERE name = ?", (name,))
            ]
            if not versions:
                known = [r[0] for r in conn.execute("SELECT DISTINCT name FROM schemas")]
        if not versions:
            raise _unknown_schema(name, known)
        return sorted(versions, key=version_key)

    # -- datasets --------------------------------------------------------------

    def register_dataset(
        self,
        name: str,
        urls: Sequence[str | os.PathLike[str]] | str,
        schema: Mapping[str, Any],
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = True,
    ) -> DatasetRecord:
        """Register (or update) a named dataset, and its schema.

        Args:
            name: letters, digits, ``.``, ``_`` and ``-``, starting with a
                letter or digit; an ``@local/`` prefix is accepted and dropped.
            urls: shard URLs, patterns or local paths (a single string counts as
                one URL).
            schema: the JSON-able dict of the sample type's schema; it is
                registered too (see :meth:`register_schema`).
            description: free text shown by ``atdata ls``.
            metadata: any JSON-able extra information.
            overwrite: replace an existing dataset of that name (keeping its
                ``created_at``); if False, an existing name is an error.

        Returns:
            The stored record.

        Raises:
            CatalogError: the name is invalid, it exists and ``overwrite`` is
                False, an argument is not JSON-able, or the index cannot be written.
            SchemaError: the schema is malformed or conflicts with a registered one.

        Example:
            >>> schema = {"name": "Digit", "version": "1.0.0", "fields": []}
            >>> urls = ["mnist-{0..9}.tar"]
            >>> cat.register_dataset("mnist-train", urls, schema).uri
            '@local/mnist-train'
        """
        name = _validate_name(name)
        url_list = _validate_urls(name, urls)
        if not isinstance(description, str):
            raise CatalogError(
                f"The description of dataset {name!r} must be a str, "
                f"got {type(description).__name__}."
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise CatalogError(
                f"The metadata of dataset {name!r} must be a dict, got {type(metadata).__name__}."
            )
        meta = dict(metadata or {})
        urls_json = _dumps(url_list, f"urls of dataset {name!r}")
        meta_json = _dumps(meta, f"metadata of dataset {name!r}")
        schema_name, schema_version, clean = _validate_schema(schema)

        with self._write("register a dataset in") as conn:
            existing = conn.execute(
                "SELECT created_at FROM datasets WHERE name = ?", (name,)
            ).fetchone()
            if existing is not None and not overwrite:
                hint = (
                    "Pass overwrite=True to replace it, remove it first "
                    "(Catalog.remove_dataset), or pick another name."
                )
                raise CatalogError(
                    f"A dataset named {name!r} is already registered. {hint}"
                ).with_cli_hint(hint, "Pass --overwrite to replace it, or pick another name.")
            schema_record = self._register_schema(conn, schema_name, schema_version, clean)
            now = _now()
            created = _parse_time(existing[0]) if existing is not None else now
            conn.execute(
                """
                INSERT INTO datasets (name, urls, schema_name, schema_version,
                                      description, metadata, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    urls = excluded.urls,
                    schema_name = excluded.schema_name,
                    schema_version = excluded.schema_version,
                    description = excluded.description,
                    metadata = excluded.metadata,
                    updated_at = excluded.updated_at
                """,
                (
                    name,
                    urls_json,
                    schema_name,
                    schema_version,
                    description,
                    meta_json,
                    _format_time(created),
                    _format_time(now),
                ),
            )
        return DatasetRecord(
            name=name,
            urls=url_list,
            schema=schema_record.schema,
            schema_name=schema_name,
            schema_version=schema_version,
            description=description,
            metadata=meta,
            created_at=created,
            updated_at=now,
        )

    def get_dataset(self, name: str) -> DatasetRecord:
        """Return a registered dataset by ``name`` or ``"@local/name"``.

        Raises:
            DatasetNotFoundError: no dataset has that name (the message
                suggests close names).

        Example:
            >>> cat.get_dataset("@local/mnist-train").schema_name
            'Digit'
        """
        name = _validate_name(name)
        with self._read("read datasets from") as conn:
            row = conn.execute(_SELECT_DATASET + " WHERE d.name = ?", (name,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT name FROM datasets")]
        if row is None:
            raise DatasetNotFoundError(name, known=known)
        return _dataset_record(row)

    def list_datasets(self) -> list[DatasetRecord]:
        """Return every registered dataset, sorted by name.

        Example:
            >>> [d.name for d in cat.list_datasets()]
            ['mnist-train', 'my-dataset']
        """
        with self._read("read datasets from") as conn:
            rows = conn.execute(_SELECT_DATASET + " ORDER BY d.name").fetchall()
        return [_dataset_record(r) for r in rows]

    def remove_dataset(self, name: str) -> None:
        """Forget a dataset. Its shards and its schema are left alone.

        Raises:
            DatasetNotFoundError: no dataset has that name.

        Example:
            >>> cat.remove_dataset("@local/mnist-train")
            >>> "@local/mnist-train" in cat
            False
        """
        name = _validate_name(name)
        with self._write("remove a dataset from") as conn:
            deleted = conn.execute("DELETE FROM datasets WHERE name = ?", (name,)).rowcount
            if not deleted:
                known = [r[0] for r in conn.execute("SELECT name FROM datasets")]
        if not deleted:
            raise DatasetNotFoundError(name, known=known)

    def __contains__(self, name: object) -> bool:
        """Whether a dataset of that name (or ``@local/`` name) is registered."""
        if not isinstance(name, str):
            return False
        try:
            name = _validate_name(name)
        except CatalogError:
            return False
        with self._read("read datasets from") as conn:
            return (
                conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone()
                is not None
            )


def resolve_local(name: str, catalog: Catalog | None = None) -> DatasetRecord:
    """Look up an ``@local/name`` (or bare ``name``) dataset in the local index.

    Args:
        name: ``"@local/mnist"`` or ``"mnist"``.
        catalog: the catalog to ask; by default the one at
            :func:`default_index_path`, opened and closed for this call.

    Returns:
        The dataset's record, with its URLs and schema.

    Raises:
        DatasetNotFoundError: no dataset has that name.

    Example:
        >>> resolve_local("@local/mnist-train").urls
        ['mnist-{0..9}.tar']
    """
    if catalog is not None:
        return catalog.get_dataset(name)
    with Catalog() as own:
        return own.get_dataset(name)


def resolve_shard_set(name: str, handler: ErrorHandler = "raise") -> ShardSet:
    """The shards of an ``@local/name`` dataset, with its registered schema.

    The resolver ``ShardSet.resolve`` (and so ``Dataset``, ``load_dataset``)
    uses for ``@local/`` names.

    Raises:
        DatasetNotFoundError: no dataset has that name.

    Example:
        >>> resolve_shard_set("@local/mnist-train").urls
        ['mnist-{0..9}.tar']
    """
    from atdata.sample import Schema
    from atdata.shards import ShardSet

    record = resolve_local(name)
    return ShardSet(record.urls, handler=handler, schema=Schema.from_json(record.schema))


# -- helpers ---------------------------------------------------------------------


def _validate_name(name: str) -> str:
    if not isinstance(name, str):
        raise CatalogError(f"A dataset name must be a str, got {type(name).__name__}.")
    bare = name.removeprefix(LOCAL_PREFIX)
    if _NAME.fullmatch(bare) is None:
        if bare.startswith("@"):
            reason = f"only {LOCAL_PREFIX!r} names live in the local index"
        elif not bare:
            reason = "it is empty"
        else:
            bad = sorted({c for c in bare if not (c.isascii() and (c.isalnum() or c in "._-"))})
            reason = (
                f"it contains {', '.join(repr(c) for c in bad)}"
                if bad
                else "it must start with a letter or digit"
            )
        raise CatalogError(
            f"Invalid dataset name {name!r}: {reason}. Use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'mnist-train'), optionally prefixed "
            f"with {LOCAL_PREFIX!r}."
        )
    return bare


def _validate_urls(name: str, urls: Sequence[str | os.PathLike[str]] | str) -> list[str]:
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise CatalogError(f"Dataset {name!r} needs at least one shard URL; got none.")
    bad = [u for u in url_list if not isinstance(u, str) and not isinstance(u, os.PathLike)]
    if bad:
        raise CatalogError(
            f"The URLs of dataset {name!r} must be strings; "
            f"got {type(bad[0]).__name__} ({bad[0]!r})."
        )
    return [os.fspath(u) for u in url_list]


def _validate_schema(schema: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(schema, Mapping):
        raise SchemaError(
            f"A schema must be a dict with 'name' and 'version', got {type(schema).__name__}. "
            "Pass the JSON form of a sample type's schema."
        )
    name = schema.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(
            f"A schema needs a non-empty 'name' (str); got {name!r} in {dict(schema)!r}."
        )
    version = schema.get("version")
    if not isinstance(version, str):
        raise SchemaError(
            f"Schema {name!r} needs a 'version' such as '1.0.0'; got {version!r}. "
            "Set one with @atdata.packable(version='1.0.0')."
        )
    clean = dict(schema)
    clean["version"] = normalize_version(version, name)
    # Round-trip through JSON so that what we return is what a later read returns.
    clean = json.loads(_dumps(clean, f"schema {name!r}", SchemaError))
    return name, clean["version"], clean


def _unknown_schema(name: str, known: Sequence[str]) -> SchemaError:
    hint = closest(name, known)
    did_you_mean = (" Did you mean " + " or ".join(map(repr, hint)) + "?") if hint else ""
    registered = ", ".join(sorted(known)) if known else "(none)"
    return SchemaError(
        f"No schema named {name!r} is registered.{did_you_mean} Registered schemas: {registered}."
    )


def _definition(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in _NON_DEFINING_KEYS}


def _describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str]:
    """How two definitions of one schema version differ, and the version the new one needs.

    Field changes and the version they need are those of
    :meth:`atdata.sample.Schema.diff`; definitions that do not read as schemas,
    or differ elsewhere, are described by the keys that differ (a minor bump).
    """
    from atdata.sample import Schema

    try:
        diff = Schema.from_json(old).diff(Schema.from_json(new))
    except (AttributeError, KeyError, TypeError, ValueError):
        diff = None
    if diff is not None and diff.next_version is not None:
        parts = [f"{_CHANGES[kind]} {', '.join(found)}" for kind, found in diff.items() if found]
        return "; ".join(parts), diff.next_version
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(keys), next_version(str(old.get("version")), "minor")


def _dumps(value: Any, what: str, error: type[CatalogError | SchemaError] = CatalogError) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise error(f"The {what} must be JSON-serialisable: {exc}.") from exc


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs an exclusive lock, and SQLite may answer "database
    # is locked" at once instead of calling the busy handler while another
    # process is creating the same fresh database; so wait here ourselves.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _dataset_record(row: Sequence[Any]) -> DatasetRecord:
    (
        name,
        urls,
        definition,
        schema_name,
        schema_version,
        description,
        metadata,
        created,
        updated,
    ) = row
    return DatasetRecord(
        name=name,
        urls=json.loads(urls),
        schema=json.loads(definition),
        schema_name=schema_name,
        schema_version=schema_version,
        description=description,
        metadata=json.loads(metadata),
        created_at=_parse_time(created),
        updated_at=_parse_time(updated),
    )

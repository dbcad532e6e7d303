"""``Atmosphere``: publish, discover and load atdata datasets on the AT Protocol network.

The client is composed from its two halves, :class:`~._resolve.RecordReader`
(reading and resolving) and :class:`~._publish.RecordPublisher` (writing); this
module adds what makes it a client: sessions (log in, restore, anonymous, from
the environment) and the current client that ``@handle/name`` and ``at://``
names resolve through (:func:`use`, :func:`current`, :func:`resolve`,
:func:`resolve_shard_set`, and :meth:`Atmosphere.load_dataset` on top of them).

Example:
    >>> from atdata.atmosphere import Atmosphere
    >>> atmo = Atmosphere.login("alice.bsky.social", "app-password")   # doctest: +SKIP
    >>> pub = atmo.publish_dataset("data/shard-{000000..000009}.tar", name="mnist",
    ...                            sample_type=Digit, storage="blobs")  # doctest: +SKIP
    >>> ds = atmo.load_dataset("@alice.bsky.social/mnist")              # doctest: +SKIP

    The same with the in-process network of ``atdata.testing``:

    >>> with atdata.testing.mock_atmosphere() as net:
    ...     alice = net.create_account("alice.test")
    ...     pub = alice.publish_dataset("data/shard-000000.tar", name="mnist",
    ...                                 sample_type=ImageSample)
    ...     alice.load_dataset("@alice.test/mnist").head(1)[0].label
    'cat'
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from atdata._refs import is_published_ref
from atdata.atmosphere._publish import PublishedDataset, RecordPublisher
from atdata.atmosphere._resolve import ResolvedDataset
from atdata.atmosphere._transport import DEFAULT_PDS, DEFAULT_PLC, SdkTransport
from atdata.errors import AtmosphereAuthError

if TYPE_CHECKING:
    from atdata.shards import ErrorHandler, ShardSet

__all__ = [
    "Atmosphere",
    "PublishedDataset",  # re-exported: defined with the half that makes it
    "ResolvedDataset",
    "current",
    "is_atmosphere_ref",
    "resolve",
    "resolve_shard_set",
    "use",
]

_CURRENT: contextvars.ContextVar[Atmosphere | None] = contextvars.ContextVar(
    "atdata_atmosphere", default=None
)
ENV_HANDLE = "ATDATA_HANDLE"
ENV_PASSWORD = "ATDATA_APP_PASSWORD"
ENV_SESSION = "ATDATA_SESSION"
ENV_PDS = "ATDATA_PDS"
ENV_PLC = "ATDATA_PLC"


class Atmosphere(RecordPublisher):
    """A client for atdata's records on the AT Protocol network.

    Build one with :meth:`login`, :meth:`from_env`, :meth:`restore` or
    :meth:`anonymous` (read-only); ``atdata.testing.mock_atmosphere()`` gives an
    in-process fake with the same behaviour for tests.

    Example:
        >>> atmo = Atmosphere.login("alice.bsky.social", "xxxx-xxxx-xxxx-xxxx")  # doctest: +SKIP
        >>> atmo.publish_schema(ImageSample).uri                                  # doctest: +SKIP
        'at://did:plc:.../science.alt.dataset.schema/social.bsky.alice.ImageSample:1.0.0'
    """

    # -- sessions ----------------------------------------------------------------------

    @classmethod
    def login(
        cls,
        handle: str,
        app_password: str,
        base_url: str | None = None,
        *,
        plc_url: str | None = None,
        timeout: float = 30.0,
    ) -> Atmosphere:
        """Log in to a PDS with a handle and an app password.

        Args:
            handle: the account's handle (or DID, or email).
            app_password: an app password (never your main password).
            base_url: the PDS; default ``ATDATA_PDS`` or ``https://bsky.social``.
            plc_url: the DID directory; default ``ATDATA_PLC`` or ``https://plc.directory``.
            timeout: seconds per request.

        Raises:
            AtmosphereAuthError: wrong handle or password.
            AtmosphereConnectionError: the PDS cannot be reached.
            MissingDependencyError: the ``atproto`` SDK is not installed.
        """
        service = (base_url or os.environ.get(ENV_PDS) or DEFAULT_PDS).rstrip("/")
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(
            SdkTransport.login(handle, app_password, service=service, plc_url=plc, timeout=timeout)
        )

    @classmethod
    def restore(
        cls,
        session: str,
        base_url: str | None = None,
        *,
        plc_url: str | None = None,
        timeout: float = 30.0,
    ) -> Atmosphere:
        """Resume a session exported with :meth:`export_session` (no password needed)."""
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(SdkTransport.restore(session, service=base_url, plc_url=plc, timeout=timeout))

    @classmethod
    def anonymous(
        cls, base_url: str | None = None, *, plc_url: str | None = None, timeout: float = 30.0
    ) -> Atmosphere:
        """A read-only client: lists and resolves public records, loads datasets."""
        service = (base_url or os.environ.get(ENV_PDS) or DEFAULT_PDS).rstrip("/")
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(SdkTransport.anonymous(service=service, plc_url=plc, timeout=timeout))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Atmosphere:
        """Log in from the environment.

        ``ATDATA_SESSION`` (an exported session) wins; else ``ATDATA_HANDLE`` and
        ``ATDATA_APP_PASSWORD``. ``ATDATA_PDS`` and ``ATDATA_PLC`` pick the servers.

        Raises:
            AtmosphereAuthError: neither a session nor a handle and password are set.
        """
        env = os.environ if environ is None else environ
        base_url, plc = env.get(ENV_PDS), env.get(ENV_PLC)
        if env.get(ENV_SESSION):
            return cls.restore(env[ENV_SESSION], base_url, plc_url=plc)
        if env.get(ENV_HANDLE) and env.get(ENV_PASSWORD):
            return cls.login(env[ENV_HANDLE], env[ENV_PASSWORD], base_url, plc_url=plc)
        raise AtmosphereAuthError(
            f"No AT Protocol credentials in the environment: set {ENV_HANDLE} and "
            f"{ENV_PASSWORD} (an app password), or {ENV_SESSION} (from export_session())."
        )

    def export_session(self) -> str:
        """A string to resume this session later with :meth:`restore`; keep it secret."""
        return self.transport.export_session()

    def close(self) -> None:
        """Close network connections."""
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Atmosphere:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        who = self.handle or "anonymous"
        return f"Atmosphere({who} @ {self.transport.service})"

    # -- loading (through this client, made current) ---------------------------------------

    def load_dataset(
        self,
        ref: str,
        T: type | None = None,  # noqa: N803 - as atdata.load_dataset
        *,
        split: str | None = None,
    ) -> Any:
        """Resolve a published dataset and open it as a :class:`~atdata.Dataset`.

        Args:
            ref: ``@handle/name[@version]`` or an ``at://`` URI.
            T: the sample type; default: built from the published schema.
            split: keep only the shards of this split (``train``, ``test``...).

        Example:
            >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
            ...                            sample_type=ImageSample)
            >>> ds = atmo.load_dataset("@alice.test/mnist")
            >>> next(iter(ds)).label
            'cat'
        """
        from atdata.dataset import load_dataset

        with use(self):
            return load_dataset(ref, T, split=split)


# -- the current client ----------------------------------------------------------------------


@contextlib.contextmanager
def use(client: Atmosphere) -> Iterator[Atmosphere]:
    """Make ``client`` the one that ``@handle/name`` and ``at://`` names resolve through.

    Example:
        >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
        ...                            sample_type=ImageSample)
        >>> with atdata.atmosphere.use(atmo):           # or Atmosphere.login(handle, pw)
        ...     ds = atdata.load_dataset("@alice.test/mnist")
        >>> len(ds.shards)
        1
    """
    token = _CURRENT.set(client)
    try:
        yield client
    finally:
        _CURRENT.reset(token)


def current() -> Atmosphere:
    """The client names resolve through: the one in :func:`use`, else from the
    environment (``ATDATA_SESSION`` or ``ATDATA_HANDLE``/``ATDATA_APP_PASSWORD``),
    else an anonymous client on ``ATDATA_PDS`` (default ``https://bsky.social``).

    Example:
        >>> with atdata.atmosphere.use(atmo):
        ...     atdata.atmosphere.current().handle
        'alice.test'
    """
    client = _CURRENT.get()
    if client is not None:
        return client
    if os.environ.get(ENV_SESSION) or (os.environ.get(ENV_HANDLE) and os.environ.get(ENV_PASSWORD)):
        return Atmosphere.from_env()
    return Atmosphere.anonymous()


def resolve(ref: str) -> ResolvedDataset:
    """Resolve ``@handle/name`` or ``at://...`` with the current client.

    The hook ``load_dataset``, ``Dataset`` and the CLI call for names that are
    not ``@local/``: ``resolved.urls`` are the shards, ``resolved.schema`` the
    sample schema.

    Example:
        >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
        ...                            sample_type=ImageSample)
        >>> r = atdata.atmosphere.resolve("@alice.test/mnist")
        >>> atdata.Dataset[r.sample_type()](r.urls).head(1)[0].label
        'cat'
    """
    chosen = _CURRENT.get()
    if chosen is not None:
        return chosen.resolve(ref)
    with current() as made:  # made for this call: close its connections after
        return made.resolve(ref)


def resolve_shard_set(ref: str, handler: ErrorHandler = "raise") -> ShardSet:
    """The shards of a published dataset, with its schema, through the current client.

    The resolver ``ShardSet.resolve`` (and so ``Dataset``, ``load_dataset``)
    uses for ``@handle/name`` and ``at://`` references. The URLs are final:
    blob URLs carry a query string that must not be taken for a glob.

    Example:
        >>> pub = atmo.publish_dataset("data/shard-{000000..000001}.tar", name="mnist",
        ...                            sample_type=ImageSample)
        >>> len(resolve_shard_set("@alice.test/mnist").shards)
        2
    """
    from atdata.shards import ShardSet

    published = resolve(ref)
    return ShardSet(published.urls, handler=handler, literal=True, schema=published.schema)


def is_atmosphere_ref(text: str) -> bool:
    """True for ``at://`` URIs and ``@handle/name`` references other than ``@local/``.

    Example:
        >>> is_atmosphere_ref("@alice.bsky.social/mnist"), is_atmosphere_ref("@local/x")
        (True, False)
    """
    return is_published_ref(text)

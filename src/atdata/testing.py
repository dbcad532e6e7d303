"""A testing kit for code built on atdata, installed as a pytest plugin.

With atdata installed, these fixtures are available in every test suite:

- ``tmp_dataset``: a small typed dataset with manifests (4 shards × 25
  :class:`ExampleSample` s); mark a test with
  ``@pytest.mark.atdata_dataset(sample_type=MySample, num_samples=100, shard_size=10)``
  to change it;
- ``make_dataset``: the factory behind it, for several datasets in one test;
- ``s3_server`` / ``s3_bucket``: a real S3 API server (moto) on loopback with
  credentials and endpoint set for ``s3://`` URLs, and a fresh bucket in it;
- ``inline_executor``: runs ``map`` tasks in the test's own process, so a
  debugger can step into your processor;
- ``dask_cluster``: a ``dask.distributed`` client on a two-process ``LocalCluster``.

And two helpers: :func:`make_samples` (valid random samples of any packable
type) and :func:`assert_datasets_equal`; plus :func:`mock_atmosphere` and
:class:`MockNetwork`, the in-process AT Protocol network of ``atdata.atmosphere``
(imported on first use, so loading this plugin stays cheap).

Example:
    >>> def test_my_processor(tmp_dataset):
    ...     result = tmp_dataset.map(my_processor)
    ...     assert len(result.head(10)) == 10
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import string
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pytest

from atdata import _lazy
from atdata.sample import NDArray, packable, schema_of

if TYPE_CHECKING:
    from atdata._types import FieldType
    from atdata.atmosphere import MockNetwork, mock_atmosphere

__all__ = [
    "ExampleSample",
    "MockNetwork",
    "assert_datasets_equal",
    "dask_cluster",
    "inline_executor",
    "make_dataset",
    "make_samples",
    "mock_atmosphere",
    "s3_bucket",
    "s3_server",
    "tmp_dataset",
]

T = TypeVar("T")
_WORDS = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep", "frog"]
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# Re-exported from atdata.atmosphere on first access: this module is a pytest plugin
# loaded by every test run, and the atmosphere layer need not load with it.
__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {"MockNetwork": "atdata.atmosphere._mock", "mock_atmosphere": "atdata.atmosphere._mock"},
)


@packable
class ExampleSample:
    """The sample type of ``tmp_dataset``: a small image classification record.

    Example:
        >>> s = make_samples(ExampleSample, 1)[0]
        >>> ExampleSample.from_bytes(s.packed).label == s.label
        True
    """

    image: NDArray[Any]
    label: str
    confidence: float
    tags: list[str]


def _random_value(ft: FieldType, rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    if ft.optional and rng.random() < 0.1:
        return None
    kind = ft.kind
    if kind == "str":
        return _WORDS[int(rng.integers(len(_WORDS)))]
    if kind == "int":
        return int(rng.integers(0, 1000))
    if kind == "float":
        return float(rng.random())
    if kind == "bool":
        return bool(rng.random() < 0.5)
    if kind == "bytes":
        return rng.bytes(int(rng.integers(0, 16)))
    if kind == "datetime":
        return _EPOCH + dt.timedelta(seconds=int(rng.integers(0, 365 * 86400)))
    if kind == "ndarray":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "enum":
        choice = ft.choices[int(rng.integers(len(ft.choices)))]
        return ft.enum_type(choice) if ft.enum_type is not None else choice
    assert ft.item is not None
    if kind == "list":
        return [_random_value(ft.item, rng, shape) for _ in range(int(rng.integers(0, 4)))]
    letters = string.ascii_lowercase
    return {letters[i]: _random_value(ft.item, rng, shape) for i in range(int(rng.integers(1, 3)))}


def make_samples(
    sample_type: type[T], n: int, seed: int = 0, *, array_shape: tuple[int, ...] = (8, 8, 3)
) -> list[T]:
    """``n`` valid random samples of any ``@packable`` type, from its annotations.

    Keys are ``sample_00000000`` upwards, so equal arguments give equal samples.

    Args:
        sample_type: the packable type.
        n: how many.
        seed: the random seed.
        array_shape: shape of every array field (uint8).

    Example:
        >>> samples = make_samples(ExampleSample, 10, seed=1)
        >>> samples[0].label in {"cat", "dog", "bird", "fish", "horse", "cow", "sheep", "frog"}
        True
    """
    schema = schema_of(sample_type)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        values = {f.name: _random_value(f.type, rng, array_shape) for f in schema.fields}
        sample = sample_type(**values)
        sample.__dict__["__key__"] = f"sample_{i:08d}"
        out.append(sample)
    return out


def assert_datasets_equal(left: Any, right: Any, *, check_order: bool = False) -> None:
    """Assert two datasets hold the same samples (by key; arrays compared exactly).

    Raises:
        AssertionError: naming the first key that differs and how.

    Example:
        >>> assert_datasets_equal(ds, atdata.Dataset[ImageSample]("data/shard-*.tar"))
        >>> assert_datasets_equal(ds, ds.filter(lambda s: s.label == "cat"))
        Traceback (most recent call last):
        ...
        AssertionError: ...
    """
    lhs, rhs = list(left), list(right)
    lkeys = [getattr(s, "__key__", None) for s in lhs]
    rkeys = [getattr(s, "__key__", None) for s in rhs]
    if check_order:
        assert lkeys == rkeys, f"keys differ in order: {lkeys[:5]}... vs {rkeys[:5]}..."
    missing, extra = set(lkeys) - set(rkeys), set(rkeys) - set(lkeys)
    assert not missing and not extra, (
        f"keys differ: {len(missing)} only on the left (e.g. {sorted(missing, key=str)[:3]}), "
        f"{len(extra)} only on the right (e.g. {sorted(extra, key=str)[:3]})"
    )
    by_key = dict(zip(rkeys, rhs, strict=True))
    for key, a in zip(lkeys, lhs, strict=True):
        b = by_key[key]
        da, db = a.to_dict(), b.to_dict()
        assert da.keys() == db.keys(), f"sample {key!r}: fields {sorted(da)} vs {sorted(db)}"
        for name, va in da.items():
            vb = db[name]
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                same = (
                    isinstance(va, np.ndarray)
                    and isinstance(vb, np.ndarray)
                    and va.dtype == vb.dtype
                    and np.array_equal(va, vb)
                )
            else:
                same = va == vb
            assert same, f"sample {key!r}, field {name!r}: {va!r:.80} != {vb!r:.80}"


# -- fixtures ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "atdata_dataset(sample_type=ExampleSample, num_samples=100, shard_size=25, seed=0): "
        "configure the tmp_dataset fixture",
    )


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Any]:
    """A factory ``make_dataset(sample_type=ExampleSample, num_samples=100, shard_size=25,
    seed=0, name="data") -> Dataset`` writing shards with manifests under ``tmp_path``.

    Example:
        >>> def test_join(make_dataset):
        ...     left = make_dataset(num_samples=10, name="left")
        ...     right = make_dataset(num_samples=10, seed=1, name="right")
        ...     assert len(left.shards) == len(right.shards) == 1
    """
    from atdata.dataset import Dataset
    from atdata.shards import ShardWriter

    def make(
        sample_type: type = ExampleSample,
        num_samples: int = 100,
        shard_size: int = 25,
        seed: int = 0,
        name: str = "data",
    ) -> Any:
        pattern = str(tmp_path / name / "shard-%06d.tar")
        with ShardWriter(pattern, maxcount=shard_size) as sink:
            sample: Any
            for sample in make_samples(sample_type, num_samples, seed):
                sink.write(sample)
        return Dataset[sample_type](sink.shards)  # type: ignore[valid-type]

    return make


@pytest.fixture
def tmp_dataset(request: pytest.FixtureRequest, make_dataset: Callable[..., Any]) -> Any:
    """A typed dataset with manifests in a temporary folder (see the module docs).

    Example:
        >>> @pytest.mark.atdata_dataset(num_samples=40, shard_size=10)
        ... def test_counts(tmp_dataset):
        ...     assert len(tmp_dataset.shards) == 4
        ...     assert tmp_dataset.describe()["num_samples"] == 40
    """
    marker = request.node.get_closest_marker("atdata_dataset")
    options = dict(marker.kwargs) if marker else {}
    return make_dataset(**options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server (moto) on 127.0.0.1 with ``s3://`` URLs pointed at it.

    Yields the endpoint URL; sets ``AWS_ENDPOINT_URL`` and test credentials for the
    session and restores the environment afterwards.

    Example:
        >>> def test_endpoint(s3_server):
        ...     assert s3_server.startswith("http://127.0.0.1:")
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("s3_server needs moto: pip install 'moto[server]'")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, empty bucket on the loopback S3 server, as ``s3://name``.

    Example:
        >>> def test_roundtrip_on_s3(s3_bucket, tmp_dataset):
        ...     out = tmp_dataset.map(my_processor, output_prefix=f"{s3_bucket}/out")
        ...     assert out.shards[0].startswith(s3_bucket)
    """
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def inline_executor() -> Any:
    """An executor that runs each shard task in this process, in order (debuggable).

    Example:
        >>> def test_with_breakpoints(tmp_dataset, inline_executor):
        ...     out = tmp_dataset.map(my_processor, executor=inline_executor)
        ...     assert len(out.head(5)) == 5
    """
    from atdata.processing import InlineExecutor

    return InlineExecutor()


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """A ``dask.distributed.Client`` on a ``LocalCluster`` of two worker processes.

    Example:
        >>> def test_on_dask(tmp_dataset, dask_cluster):
        ...     from atdata.processing.executors.dask import DaskExecutor
        ...     out = tmp_dataset.map(my_processor, executor=DaskExecutor(dask_cluster))
        ...     assert len(out.shards) == len(tmp_dataset.shards)
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        pytest.skip("dask_cluster needs dask: pip install 'atdata[dask]'")
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
        cluster.close()

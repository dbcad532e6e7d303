"""Every public object is documented with an example, and the examples run.

Two checks:

- ``test_public_objects_have_examples``: every name in the ``__all__`` of the
  user-facing modules (``PUBLIC_MODULES``), and every public method and property
  of the classes exported from ``atdata`` itself, has a docstring with an
  example (an ``Example:``/``Examples:`` section or a ``>>>`` line). Plain
  constants and type aliases cannot carry a docstring and are left out; a
  module-level instance (``atdata.metrics``) is judged by its class's docstring.
- ``test_doctests``: the ``>>>`` examples of every ``atdata`` module run as
  doctests, one module per test. Each docstring starts from its module's globals
  plus the names of :func:`namespace` (``atdata``, ``np``, ``ds``: 40
  ``ImageSample`` s in ``data/``, ``sample``, ``batch``, ``view``, ``embed``,
  ``task``, ``cat``, ``registry``, ``event``, ``atmo``...), in a working
  directory of its own: a copy of a folder prepared once per run (the shards, two
  finished map jobs, a local index). ``s3://bucket`` is the testing kit's
  loopback S3 server and ``@handle/name`` resolves through an in-process
  ``MockNetwork``, so examples run offline. Lines that need a real PDS, a cloud
  account, Modal or a Dask cluster carry ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shutil
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata.atmosphere import MockNetwork
from atdata.pipeline import ObjectEvent, PipelineRegistry
from atdata.pipeline import _registry as pipeline_registry
from atdata.processing import executors

PUBLIC_MODULES = [
    "atdata",
    "atdata.shards",
    "atdata.manifest",
    "atdata.processing",
    "atdata.loader",
    "atdata.torch",
    "atdata.storage",
    "atdata.lens",
    "atdata.index",
    "atdata.pipeline",
    "atdata.atmosphere",
    "atdata.testing",
    "atdata.errors",
    "atdata.observability",
]

# Modules that need an optional package to import.
OPTIONAL: dict[str, str] = {"atdata.torch": "torch", "atdata.modal": "modal"}

# The one exemption from the example rule: the exception classes of atdata.errors.
# An example for each would be ``except X:``, which says no more than its name and
# its place in the tree; the module docstring draws the tree and shows catching
# once. They still need a docstring.
ERRORS_NEED_NO_EXAMPLE = "atdata.errors"

# Objects whose source files are being rewritten in a concurrent change (the
# manifest header/format/query rewrite); their docstrings come with it. Remove a
# name as soon as it has an example (test_exemptions_are_still_needed says so).
PENDING_REWRITE: set[str] = set()

_EXAMPLE = re.compile(r"^\s*(Examples?:\s*$|>>> )", re.MULTILINE)


# -- the public objects -------------------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    if isinstance(value, property):
        return value.fget
    if isinstance(value, (classmethod, staticmethod)):
        return value.__func__
    return value


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of ``cls`` defined in atdata (base classes too)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("atdata"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(value, (property, classmethod, staticmethod)) or inspect.isfunction(
                value
            ):
                seen.add(name)
                yield name, value


def _documented(value: Any) -> Any | None:
    """The object whose docstring documents ``value``; None for plain data."""
    value = _unwrap(value)
    if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, types.ModuleType):
        return value  # (``atdata.lens`` is a callable module)
    if type(value).__module__.startswith("atdata"):  # an instance: its class
        return type(value)
    if callable(value) and hasattr(value, "__wrapped__"):  # a pytest fixture
        return value
    return None  # a constant or a type alias


def _docstring(obj: Any) -> str | None:
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")  # its own, not a base class's
    return inspect.getdoc(obj)


def public_objects() -> dict[str, Any]:
    """Qualified name -> object, each object once (under its first name)."""
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def add(qualname: str, value: Any) -> None:
        obj = _documented(value)
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        found[qualname] = obj

    for name in PUBLIC_MODULES:
        if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name]) is None:
            continue
        module = importlib.import_module(name)
        for attr in module.__all__:
            value = getattr(module, attr)
            add(f"{name}.{attr}", value)
            if name == "atdata" and inspect.isclass(value):
                for member, member_value in _members(value):
                    add(f"{name}.{attr}.{member}", member_value)
    return found


def _needs_example(obj: Any) -> bool:
    return not (
        inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == ERRORS_NEED_NO_EXAMPLE
    )


def test_public_objects_have_examples() -> None:
    missing = []
    for qualname, obj in public_objects().items():
        if qualname in PENDING_REWRITE:
            continue
        doc = _docstring(obj)
        if not doc:
            missing.append(f"{qualname}: no docstring")
        elif _needs_example(obj) and not _EXAMPLE.search(doc):
            missing.append(f"{qualname}: no example")
    assert not missing, f"{len(missing)} public objects lack docs:\n" + "\n".join(missing)


def test_exemptions_are_still_needed() -> None:
    objects = public_objects()
    assert set(objects) >= PENDING_REWRITE, PENDING_REWRITE - set(objects)
    done = sorted(
        q for q in PENDING_REWRITE if (d := _docstring(objects[q])) and _EXAMPLE.search(d)
    )
    assert not done, f"documented now, remove from PENDING_REWRITE: {done}"


# -- the doctests -------------------------------------------------------------------------------


def _all_modules() -> list[str]:
    """Every atdata module whose source has a ``>>>`` line (read, not imported)."""
    names = []
    for info in pkgutil.walk_packages(atdata.__path__, "atdata."):
        spec = importlib.util.find_spec(info.name)
        if info.name.endswith(("__main__", ".conftest")) or spec is None or not spec.origin:
            continue
        if ">>> " in Path(spec.origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return ["atdata", *sorted(names)]


@atdata.packable
class ImageSample:
    """The sample type of the doctests' dataset ``ds``."""

    image: atdata.NDArray
    label: str
    confidence: float = 1.0


@atdata.packable
class EmbeddingSample:
    """What the doctests' example processor ``embed`` returns."""

    embedding: atdata.NDArray
    label: str = ""


@atdata.packable
class LabelSample:
    """A view type without a registered lens (examples register their own)."""

    label: str


@atdata.packable
class LabelOnly:
    """A view of ``ImageSample`` through the lens ``image_to_label``."""

    label: str


@atdata.lens
def image_to_label(sample: ImageSample) -> LabelOnly:
    return LabelOnly(label=sample.label)


_LABELS = ["cat", "dog", "bird", "fish"]


def _write_dataset(root: Path) -> None:
    """40 ``ImageSample`` s in ten shards (with manifests) under ``root/data``."""
    rng = np.random.default_rng(0)
    with atdata.ShardWriter(str(root / "data" / "shard-%06d.tar"), maxcount=4) as sink:
        for i in range(40):
            sink.write(
                ImageSample(
                    image=rng.integers(0, 255, (4, 4, 3), dtype=np.uint8),
                    label=_LABELS[i % 4],
                    confidence=round(float(rng.random()), 3),
                )
            )


def _run_jobs(root: Path) -> None:
    """Two finished map jobs over ``root/data``: ``embedded/v1`` and ``broken/v1``,
    whose last shard failed (its dead letter recorded)."""
    ds = atdata.Dataset[ImageSample](str(root / "data" / "shard-{000000..000009}.tar"))
    ds.map(embed, output_prefix=str(root / "embedded" / "v1"), executor="inline")
    with pytest.raises(atdata.PartialFailureError):
        ds.map(
            fails_on_fish_in_last_shard,
            output_prefix=str(root / "broken" / "v1"),
            executor="inline",
            retries=0,
        )


def _register(root: Path) -> None:
    """A local index in ``root/home``: schema ``Digit`` (three versions), datasets
    ``mnist-train`` (Digit) and ``my-dataset`` (the shards of ``ds``)."""
    (root / "home").mkdir()
    with atdata.Catalog(root / "home") as cat:
        digit = {"name": "Digit", "version": "1.0.0", "fields": []}
        for version in ("1.0.0", "1.9.0", "1.10.0"):
            cat.register_schema({**digit, "version": version})
        cat.register_dataset("mnist-train", ["mnist-{0..9}.tar"], digit)
        schema = ImageSample.__schema__.to_json()
        cat.register_dataset("my-dataset", ["data/shard-{000000..000009}.tar"], schema)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("doctest-data")
    _write_dataset(root)
    _run_jobs(root)
    _register(root)
    return root


def embed(sample: ImageSample) -> EmbeddingSample:
    """The doctests' example processor: an image's mean colour."""
    return EmbeddingSample(
        embedding=sample.image.mean(axis=(0, 1)).astype(np.float32), label=sample.label
    )


def fails_on_fish_in_last_shard(sample: ImageSample) -> ImageSample:
    if sample.__key__ == "sample_00000039":
        raise ValueError("no fish today")
    return sample


def model(images: np.ndarray) -> np.ndarray:
    """A stand-in model: mean colour of an image, or of each image of a batch."""
    return images.mean(axis=(-3, -2)).astype(np.float32)


def train_step(batch: Any) -> None:
    """A stand-in for a training step."""


@atdata.packable
class Reading:
    """A one-field sample type for small examples."""

    value: float


def _task(cwd: Path) -> Any:
    """A shard task (``embed`` over ``data/shard-000000.tar``), as executors receive them."""
    from atdata.processing._processor import as_processor
    from atdata.processing._serialize import dumps
    from atdata.processing._task import Payload, ShardTask

    payload = Payload(
        fn=as_processor(embed),
        stored_type=ImageSample,
        transform=lambda s: s,
        output_type=EmbeddingSample,
        name="embed",
    )
    return ShardTask(
        job_id="job",
        task_id="shard-000000",
        input_url="data/shard-000000.tar",
        output_url=str(cwd / "tmp" / "shard-000000.tar"),
        payload=dumps(payload),
    )


@pytest.fixture(scope="module")
def bucket(s3_server: str, prepared: Path) -> dict[str, str]:
    """``s3://bucket`` on the kit's loopback S3 server, holding ``incoming/a.tar``
    (a copy of ``data/shard-000000.tar``); returns ``{key: etag}``."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket="bucket")
    data = (prepared / "data" / "shard-000000.tar").read_bytes()
    etag = client.put_object(Bucket="bucket", Key="incoming/a.tar", Body=data)["ETag"]
    return {"incoming/a.tar": etag.strip('"')}


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    """One warm ``LocalExecutor(workers=1)`` for the examples: a worker process
    takes a second or two to start."""
    with atdata.LocalExecutor(workers=1) as executor:
        yield executor


def _registry() -> Any:
    """The pipelines of the examples: ``process`` embeds every shard arriving
    under ``s3://bucket/incoming``, writing under ``out/processed``."""
    registry = PipelineRegistry()

    @registry.pipeline(trigger="s3://bucket/incoming", output="out/processed")
    def process(shard_url: str) -> Any:
        return atdata.Dataset[ImageSample](shard_url).map(embed)

    registry.add_processor(embed)
    return registry


def namespace(cwd: Path, objects: dict[str, str], pool: Any = None) -> dict[str, Any]:
    """The globals every doctest starts from, with ``cwd`` its working directory.

    ``cwd`` holds ``data/shard-000000.tar`` ... ``shard-000009.tar`` (40
    ``ImageSample`` s with manifests; keys ``sample_00000000`` ...) and an empty
    ``tmp/``; ``ATDATA_HOME`` is ``cwd/home``, where ``cat`` (``atdata.Catalog()``)
    holds ``@local/mnist-train`` and ``@local/my-dataset``; ``event`` is the upload
    of ``s3://bucket/incoming/a.tar``, which ``registry``'s pipeline ``process``
    handles; ``atmo`` is ``alice.test`` logged in on ``net``, a ``MockNetwork``
    through which ``@handle/name`` references resolve.
    """
    samples = [
        ImageSample(image=np.zeros((4, 4, 3), np.uint8), label=_LABELS[i % 4], confidence=0.5)
        for i in range(8)
    ]
    (cwd / "tmp").mkdir()
    ds = atdata.Dataset[ImageSample]("data/shard-{000000..000009}.tar")
    web_text = atdata.Dataset[ImageSample]("data/shard-00000[0-4].tar")
    books = atdata.Dataset[ImageSample]("data/shard-00000[5-9].tar")
    view = ds.shuffled(seed=0, batch_size=8)
    net = MockNetwork().__enter__()  # ``@handle/name`` resolves through it; closed after
    return {
        "atdata": atdata,
        "np": np,
        "ImageSample": ImageSample,
        "EmbeddingSample": EmbeddingSample,
        "LabelSample": LabelSample,
        "LabelOnly": LabelOnly,
        "ds": ds,
        "batch": atdata.SampleBatch(ds.head(8)),
        "view": view,
        "checkpoint": {"data": view.state_dict()},
        "web_text": web_text,
        "books": books,
        "mixed": atdata.mix([web_text, books], weights=[0.7, 0.3], seed=0),
        "samples": samples,
        "sample": samples[0],
        "embed": embed,
        "fn": embed,
        "model": model,
        "Reading": Reading,
        "task": _task(cwd),
        "train_step": train_step,
        "tmp": cwd / "tmp",
        "cat": atdata.Catalog(cwd / "home"),
        "registry": _registry(),
        "event": ObjectEvent("bucket", "incoming/a.tar", objects["incoming/a.tar"]),
        "net": net,
        "atmo": net.create_account("alice.test"),
        "pool": pool,
    }


def _doctests(module: types.ModuleType) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module) if t.examples]


def _working_copy(prepared: Path, cwd: Path) -> None:
    """A doctest's own copy of the prepared folder: hard links (files are replaced,
    never changed in place, by atdata's atomic writes), but a real copy of the
    local index, which SQLite changes in place."""
    shutil.copytree(prepared, cwd, copy_function=os.link, ignore=shutil.ignore_patterns("home"))
    shutil.copytree(prepared / "home", cwd / "home")


MODULES = _all_modules()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests(
    module_name: str,
    prepared: Path,
    bucket: dict[str, str],
    pool: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    top = ".".join(module_name.split(".")[:2])
    if top in OPTIONAL:
        pytest.importorskip(OPTIONAL[top])
    module = importlib.import_module(module_name)
    tests = _doctests(module)
    if not tests:
        pytest.skip("no examples")
    # the module's globals, without ``from __future__ import annotations``: a class
    # defined in an example has its annotations evaluated there, where its names are
    module_globals = {k: v for k, v in vars(module).items() if type(v).__module__ != "__future__"}
    failures = []
    for i, test in enumerate(tests):
        cwd = tmp_path / f"t{i}"
        _working_copy(prepared, cwd)
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("ATDATA_HOME", str(cwd / "home"))
        # an example's register_executor() stays in its example; ds.map(...) without
        # executor= runs in-process (worker processes take seconds to start)
        registry = {**executors._REGISTRY, "local": executors._REGISTRY["inline"]}
        monkeypatch.setattr(executors, "_REGISTRY", registry)
        # @atdata.pipeline in an example registers in a default registry of its own
        monkeypatch.setattr(pipeline_registry, "default_registry", PipelineRegistry())
        names = namespace(cwd, bucket, pool)
        atdata.metrics.reset()  # examples that read counters start from zero
        test.globs = {**module_globals, **names}
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        out: list[str] = []
        with warnings.catch_warnings():
            # torch's advice about worker counts depends on the machine, not the example
            warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
            runner.run(test, out=out.append, clear_globs=True)
        names["cat"].close()
        names["net"].__exit__(None, None, None)
        if runner.failures:
            failures.append("".join(out))
    os.chdir(tmp_path)
    assert not failures, "\n".join(failures)

"""``atdata.modal.Dispatcher`` on a real ``modal.App`` (Modal's servers are not reachable
here): what is registered, with which settings, and what the containers would run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

modal = pytest.importorskip("modal")

import atdata.modal  # noqa: E402
from atdata.errors import PipelineError  # noqa: E402
from atdata.modal import _dispatcher  # noqa: E402

TOKEN = "modal-token-0123456789abcdef"


def test_atdata_modal_does_not_shadow_modal() -> None:
    assert modal.__name__ == "modal" and hasattr(modal, "App")
    assert atdata.modal.__name__ == "atdata.modal"
    assert sys.modules["modal"] is modal


def test_dispatcher_registers_a_web_endpoint_and_a_worker() -> None:
    app = modal.App("atdata-test-dispatcher")
    secret = modal.Secret.from_dict({"ATDATA_TOKEN": TOKEN})
    dispatcher = atdata.modal.Dispatcher(
        app,
        pipelines=["my_pipelines"],
        secrets=[secret],
        cpu=2.0,
        memory=4096,
        timeout=1800,
        max_concurrent_requests=50,
        label="atdata-ingest",
    )
    assert (dispatcher.web_name, dispatcher.worker_name) == ("atdata-dispatcher", "atdata-worker")

    web = dispatcher.web.info()
    assert web.web_info is not None  # an ASGI web endpoint
    assert web.concurrency_info is not None and web.concurrency_info.max_inputs == 50
    assert any("ATDATA_TOKEN" in s for s in web.secrets)

    worker = dispatcher.worker.info()
    assert worker.web_info is None
    assert (worker.cpu, worker.memory_mib, worker.timeout) == (2.0, 4096, 1800)
    assert any("ATDATA_PIPELINES" in s for s in worker.secrets)

    assert dispatcher.env == {
        "ATDATA_PIPELINES": "my_pipelines",
        "ATDATA_MODAL_APP": "atdata-test-dispatcher",
        "ATDATA_MODAL_WORKER": "atdata-worker",
        "ATDATA_LEASE_SECONDS": "3600.0",
        "ATDATA_MAX_ATTEMPTS": "3",
        "ATDATA_JOB_EXECUTOR": "local",
    }
    # containers import the functions by reference from this module: no pickling
    assert dispatcher.web._is_web_endpoint() and not dispatcher.worker._is_web_endpoint()
    assert "Dispatcher(app='atdata-test-dispatcher'" in repr(dispatcher)


def test_two_dispatchers_on_one_app_need_different_names() -> None:
    app = modal.App("atdata-test-two")
    atdata.modal.Dispatcher(app, pipelines=["a"])
    second = atdata.modal.Dispatcher(app, pipelines=["b"], name="other")
    assert second.web_name == "other-dispatcher"


def test_pipelines_default_to_the_calling_module() -> None:
    app = modal.App("atdata-test-caller")
    dispatcher = atdata.modal.Dispatcher(app)
    assert dispatcher.modules == [__name__]


def test_dispatcher_refuses_unusable_settings() -> None:
    with pytest.raises(PipelineError, match="named app"):
        atdata.modal.Dispatcher(modal.App(), pipelines=["x"])
    with pytest.raises(PipelineError, match="not a module name"):
        atdata.modal.Dispatcher(modal.App("atdata-test-bad"), pipelines=["pipelines.py"])


def test_default_image_carries_atdata_and_its_runtime_requirements() -> None:
    requirements = _dispatcher.runtime_requirements()
    names = {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requirements}
    assert {"numpy", "msgspec", "starlette", "uvicorn", "s3fs"} <= names
    assert "dask" not in names and "torch" not in names
    assert _dispatcher.default_image(["my_pipelines"]) is not None


# -- what the containers run --------------------------------------------------------------------


PIPELINES = """
import atdata

RAN = []

@atdata.pipeline(trigger="s3://bkt/incoming", output={output!r}, name="modal_test_pipe")
def modal_test_pipe(shard_url: str) -> None:
    RAN.append(shard_url)
"""


@pytest.fixture
def container_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The environment a Dispatcher gives its containers, with a pipelines module on the path."""
    name = f"modal_pipes_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PIPELINES.format(output=str(tmp_path / "out")))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setitem(sys.modules, name, None)  # absent now, and again afterwards
    del sys.modules[name]
    from atdata.pipeline import default_registry

    monkeypatch.setattr(default_registry, "_pipelines", dict(default_registry._pipelines))
    app = modal.App("atdata-test-container")
    dispatcher = atdata.modal.Dispatcher(app, pipelines=[name])
    for key, value in dispatcher.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ATDATA_TOKEN", TOKEN)
    return name


def test_web_container_claims_then_spawns_the_worker(container_env: str) -> None:
    from starlette.testclient import TestClient

    spawned: list[dict[str, Any]] = []

    class FakeFunction:
        def spawn(self, task: dict[str, Any]) -> None:
            spawned.append(task)

    looked_up: list[tuple[str, str]] = []

    def from_name(app_name: str, name: str) -> FakeFunction:
        looked_up.append((app_name, name))
        return FakeFunction()

    original = modal.Function.from_name
    modal.Function.from_name = from_name  # type: ignore[method-assign]
    try:
        asgi = _dispatcher._web()
        event = {
            "bucket": "bkt",
            "action": "PutObject",
            "object": {"key": "incoming/a.tar", "eTag": "etag-0123456789"},
        }
        with TestClient(asgi) as client:
            answer = client.post(
                "/ingest", json=event, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            duplicate = client.post(
                "/ingest", json=event, headers={"Authorization": f"Bearer {TOKEN}"}
            )
    finally:
        modal.Function.from_name = original  # type: ignore[method-assign]
    assert answer.status_code == 202 and duplicate.json()["runs"][0]["reason"] == "running"
    assert looked_up == [("atdata-test-container", "atdata-worker")]
    (task,) = spawned
    assert task["kind"] == "event" and task["pipeline"] == "modal_test_pipe"

    # ...and the worker container runs it and records the outcome in the ledger
    result = _dispatcher._worker(task)
    assert result["status"] == "done"
    module = sys.modules[container_env]
    assert module.RAN == ["s3://bkt/incoming/a.tar"]

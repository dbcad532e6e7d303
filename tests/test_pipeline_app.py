"""The dispatcher's ASGI app, through Starlette's test client: auth, validation, ingest,
jobs. A rejected request must run nothing and claim nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import atdata
from atdata.errors import PipelineError
from atdata.pipeline import InlineRunner, PipelineRegistry, ThreadRunner, create_app
from atdata.processing import processor

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@atdata.packable
class RawSample:
    text: str
    value: int


@atdata.packable
class CleanSample:
    text: str
    doubled: int


@processor
def transform_sample(sample: RawSample) -> CleanSample:
    return CleanSample(text=sample.text.upper(), doubled=sample.value * 2)


def r2_event(key: str, etag: str = "etag-0123456789", action: str = "PutObject") -> dict[str, Any]:
    return {
        "account": "acct",
        "bucket": "bkt",
        "object": {"key": key, "size": 10, "eTag": etag},
        "action": action,
        "eventTime": "2026-04-01T12:00:00.000Z",
    }


class Calls:
    def __init__(self) -> None:
        self.urls: list[str] = []


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def registry(tmp_path: Path, calls: Calls) -> PipelineRegistry:
    reg = PipelineRegistry()
    reg.pipeline("s3://bkt/incoming", str(tmp_path / "processed"), name="record")(calls.urls.append)
    reg.add_processor(transform_sample)
    return reg


@pytest.fixture
def client(registry: PipelineRegistry) -> Iterator[TestClient]:
    app = create_app(registry, token=TOKEN, runner=InlineRunner(), job_executor="inline")
    with TestClient(app) as c:
        yield c


def _ledger_records(client: TestClient) -> list[Any]:
    service = client.app.state.service  # type: ignore[attr-defined]
    return service.ledger(service.registry.get("record")).records()


# -- auth --------------------------------------------------------------------------------


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_every_route_needs_the_token(
    client: TestClient, calls: Calls, headers: dict[str, str]
) -> None:
    for method, path, body in [
        ("POST", "/ingest", r2_event("incoming/a.tar")),
        (
            "POST",
            "/jobs",
            {"input": "x.tar", "output_prefix": "o", "processor": "transform_sample"},
        ),
        ("GET", "/jobs/jabc", None),
        ("GET", "/pipelines", None),
        ("GET", "/pipelines/record/events/" + "0" * 32, None),
        ("GET", "/metrics", None),
    ]:
        answer = client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 401, path
        assert answer.json() == {"error": "missing or wrong bearer token"}
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert calls.urls == [] and _ledger_records(client) == []


def test_token_comes_from_the_environment(
    registry: PipelineRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATDATA_TOKEN", raising=False)
    with pytest.raises(PipelineError, match="ATDATA_TOKEN"):
        create_app(registry)
    monkeypatch.setenv("ATDATA_TOKEN", "short")
    with pytest.raises(PipelineError, match="at least 16 characters"):
        create_app(registry)
    monkeypatch.setenv("ATDATA_TOKEN", TOKEN)
    with TestClient(create_app(registry, runner=InlineRunner())) as c:
        assert c.get("/pipelines", headers=AUTH).status_code == 200


# -- malformed requests run nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"", 400, "empty request body"),
        (b"{not json", 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[" * 3000 + b"]" * 3000, 400, "nested too deeply"),
        (b"[1, 2]", 422, "expected a JSON object"),
        (json.dumps({"bucket": "bkt", "action": "PutObject"}).encode(), 422, "'object'"),
        (
            json.dumps(
                {**r2_event("incoming/a.tar"), "object": {"key": "incoming/a.tar"}}
            ).encode(),
            422,
            "'object.eTag'",
        ),
    ],
)
def test_malformed_ingest_bodies(
    client: TestClient, calls: Calls, body: bytes, status: int, reason: str
) -> None:
    answer = client.post(
        "/ingest", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == status
    error = answer.json()["error"]
    assert reason in error and "\n" not in error
    assert calls.urls == [] and _ledger_records(client) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
EVENTISH = st.fixed_dictionaries(
    {"bucket": st.sampled_from(["bkt", ""]), "action": st.sampled_from(["PutObject", "x"])},
    optional={
        "object": st.dictionaries(st.sampled_from(["key", "eTag", "size"]), JSON),
        "eventTime": JSON,
        "copySource": JSON,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        JSON.map(json.dumps).map(str.encode),
        EVENTISH.map(json.dumps).map(str.encode),
    ),
    route=st.sampled_from(["/ingest", "/jobs"]),
)
def test_fuzzed_bodies_get_a_4xx_or_are_accepted_never_a_500(
    client: TestClient, body: bytes, route: str
) -> None:
    answer = client.post(route, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) == {"error"}


def test_oversized_bodies_are_refused(registry: PipelineRegistry, calls: Calls) -> None:
    app = create_app(registry, token=TOKEN, runner=InlineRunner(), max_body_bytes=1024)
    event = r2_event("incoming/a.tar")
    event["padding"] = "x" * 2000
    with TestClient(app) as c:
        answer = c.post("/ingest", json=event, headers=AUTH)
        assert answer.status_code == 413 and "larger than 1024 bytes" in answer.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield b'{"bucket": "bkt", '
            yield b" " * 2000

        answer = c.post("/ingest", content=chunks(), headers=AUTH)
        assert answer.status_code == 413
    assert calls.urls == []


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    assert client.get("/nope", headers=AUTH).json() == {"error": "Not Found"}
    answer = client.get("/ingest", headers=AUTH)
    assert answer.status_code == 405 and answer.json() == {"error": "Method Not Allowed"}


# -- ingest --------------------------------------------------------------------------------------


def test_ingest_runs_once_per_object_version(client: TestClient, calls: Calls) -> None:
    first = client.post("/ingest", json=r2_event("incoming/a.tar"), headers=AUTH)
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "accepted" and body["runs"][0]["reason"] == "new"
    assert body["runs"][0]["output_prefix"].endswith("processed/a/etag-0123456789")
    again = client.post("/ingest", json=r2_event("incoming/a.tar"), headers=AUTH)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate" and again.json()["runs"][0]["reason"] == "done"
    new_version = client.post(
        "/ingest", json=r2_event("incoming/a.tar", etag="etag-999999999"), headers=AUTH
    )
    assert new_version.status_code == 202
    assert calls.urls == ["s3://bkt/incoming/a.tar"] * 2
    event_id = body["runs"][0]["event_id"]
    record = client.get(f"/pipelines/record/events/{event_id}", headers=AUTH).json()
    assert record["state"] == "done" and record["etag"] == "etag-0123456789"
    assert client.get("/pipelines/record/events/" + "f" * 32, headers=AUTH).status_code == 404
    assert client.get("/pipelines/nope/events/" + "f" * 32, headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("key", "action", "reason"),
    [
        ("incoming/a.tar", "DeleteObject", "not an object-create action"),
        ("incoming/a.manifest.json", "PutObject", "not a .tar shard"),
        ("elsewhere/a.tar", "PutObject", "no pipeline's trigger matches"),
    ],
)
def test_ignored_events_are_acknowledged(
    client: TestClient, calls: Calls, key: str, action: str, reason: str
) -> None:
    answer = client.post("/ingest", json=r2_event(key, action=action), headers=AUTH)
    assert answer.status_code == 200  # 2xx: the queue acks it and does not retry
    assert answer.json()["status"] == "ignored" and reason in answer.json()["reason"]
    assert calls.urls == []


def test_concurrent_duplicate_deliveries_run_once(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    reg = PipelineRegistry()

    @reg.pipeline("s3://bkt/incoming", str(tmp_path / "out"))
    def slow(shard_url: str) -> None:
        ran.append(shard_url)
        started.set()
        release.wait(30)

    runner = ThreadRunner(4)
    app = create_app(reg, token=TOKEN, runner=runner)
    with TestClient(app) as c:
        t0 = time.perf_counter()
        first = c.post("/ingest", json=r2_event("incoming/a.tar"), headers=AUTH)
        answered_in = time.perf_counter() - t0
        assert first.status_code == 202 and answered_in < 5  # answered while the run waits
        assert started.wait(30)
        barrier = threading.Barrier(8)
        codes: list[int] = []

        def deliver() -> None:
            barrier.wait()
            codes.append(
                c.post("/ingest", json=r2_event("incoming/a.tar"), headers=AUTH).status_code
            )

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert codes == [200] * 8
        release.set()
        assert runner.wait_idle(30)
    assert ran == ["s3://bkt/incoming/a.tar"]


def test_ledger_outage_answers_503_so_the_queue_retries(tmp_path: Path) -> None:
    reg = PipelineRegistry()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output folder should be")
    reg.pipeline("s3://bkt/incoming", str(blocker / "out"), name="p")(lambda url: None)
    with TestClient(create_app(reg, token=TOKEN, runner=InlineRunner())) as c:
        answer = c.post("/ingest", json=r2_event("incoming/a.tar"), headers=AUTH)
    assert answer.status_code == 503 and "retry later" in answer.json()["error"]


# -- jobs --------------------------------------------------------------------------------------


def _write_input(folder: Path, shards: int = 2, n: int = 10) -> list[str]:
    with atdata.ShardWriter(str(folder / "in-%06d.tar"), maxcount=n) as sink:
        for i in range(shards * n):
            sink.write(RawSample(text=f"t{i}", value=i))
    return sink.shards


def test_post_job_starts_a_map_and_get_reports_it(client: TestClient, tmp_path: Path) -> None:
    _write_input(tmp_path / "data")
    out = str(tmp_path / "job-out")
    answer = client.post(
        "/jobs",
        json={
            "input": str(tmp_path / "data" / "in-*.tar"),
            "output_prefix": out,
            "processor": "transform_sample",
        },
        headers=AUTH,
    )
    assert answer.status_code == 202
    started = answer.json()
    assert started["shard_count"] == 2 and started["status"] == "started"
    assert started["status_url"] == f"/jobs/{started['job_id']}"
    status = client.get(started["status_url"], headers=AUTH).json()
    assert status["state"] == "done" and status["counts"] == {"done": 2, "failed": 0, "pending": 0}
    assert [s["state"] for s in status["shards"]] == ["done", "done"]
    assert status["dispatcher"]["state"] == "done"
    doubled = sorted(s.doubled for s in atdata.Dataset[CleanSample](f"{out}/*.tar"))
    assert doubled == [2 * i for i in range(20)]


def test_job_partial_results_and_errors(registry: PipelineRegistry, tmp_path: Path) -> None:
    @processor
    def picky(sample: RawSample) -> CleanSample:
        if sample.value >= 10:  # every sample of the second shard
            raise ValueError(f"cannot handle {sample.value}")
        return CleanSample(text=sample.text, doubled=sample.value)

    registry.add_processor(picky)
    _write_input(tmp_path / "data")
    out = str(tmp_path / "partial")
    with TestClient(
        create_app(registry, token=TOKEN, runner=InlineRunner(), job_executor="inline")
    ) as c:
        started = c.post(
            "/jobs",
            json={
                "input": str(tmp_path / "data" / "in-*.tar"),
                "output_prefix": out,
                "processor": "picky",
            },
            headers=AUTH,
        ).json()
        status = c.get(started["status_url"], headers=AUTH).json()
    assert status["state"] == "partial" and status["counts"]["done"] == 1
    assert status["counts"]["failed"] == 1
    (failed_shard,) = status["errors"]
    assert (
        failed_shard.endswith("in-000001.tar")
        and "cannot handle 10" in status["errors"][failed_shard]
    )
    assert status["dead_letters"][0]["input_shard"] == failed_shard


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"input": "x.tar", "output_prefix": "o"}, 422, "'processor'"),
        (
            {"input": "x.tar", "output_prefix": "o", "processor": "nope"},
            422,
            "unknown processor 'nope'",
        ),
        ({"input": 5, "output_prefix": "o", "processor": "transform_sample"}, 422, "'input'"),
        ({"input": [], "output_prefix": "o", "processor": "transform_sample"}, 422, "'input'"),
        ({"input": "x.tar", "processor": "transform_sample"}, 422, "'output_prefix'"),
        (
            {"input": "x.tar", "output_prefix": "o", "processor": "transform_sample", "extra": 1},
            422,
            "unknown field(s) 'extra'",
        ),
        (
            {
                "input": "x.tar",
                "output_prefix": "o",
                "processor": "transform_sample",
                "options": {"executor": "dask"},
            },
            422,
            "'options.executor' is not accepted",
        ),
        (
            {
                "input": "x.tar",
                "output_prefix": "o",
                "processor": "transform_sample",
                "options": {"on_error": "ignore"},
            },
            422,
            "'options.on_error'",
        ),
        (
            {"input": "missing-*.tar", "output_prefix": "o", "processor": "transform_sample"},
            422,
            "No files match",
        ),
    ],
)
def test_bad_job_requests_start_nothing(
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    answer = client.post("/jobs", json=body, headers=AUTH)
    assert answer.status_code == status
    assert reason in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_unknown_job_ids(client: TestClient, tmp_path: Path) -> None:
    from atdata.pipeline._service import job_id_for

    assert (
        client.get(f"/jobs/{job_id_for(str(tmp_path / 'never'))}", headers=AUTH).status_code == 404
    )
    assert client.get("/jobs/not-a-job", headers=AUTH).status_code == 422


def test_a_running_job_conflicts_with_a_second_one(
    registry: PipelineRegistry, tmp_path: Path
) -> None:
    release = threading.Event()

    class Held:
        def __init__(self) -> None:
            self.inner = ThreadRunner(1)

        def submit(self, task: Any, execute: Any) -> None:
            self.inner.submit(task, lambda t: (release.wait(30), execute(t)))

        def close(self, wait: bool = True) -> None:
            self.inner.close(wait)

    _write_input(tmp_path / "data", shards=1)
    body = {
        "input": str(tmp_path / "data" / "in-000000.tar"),
        "output_prefix": str(tmp_path / "o"),
        "processor": "transform_sample",
    }
    with TestClient(create_app(registry, token=TOKEN, runner=Held(), job_executor="inline")) as c:
        first = c.post("/jobs", json=body, headers=AUTH)
        assert first.status_code == 202
        assert c.get(first.json()["status_url"], headers=AUTH).json()["state"] == "queued"
        second = c.post("/jobs", json=body, headers=AUTH)
        assert second.status_code == 409 and "already queued" in second.json()["error"]
        release.set()
    # leaving the client ran the app's shutdown, which waited for the job
    assert len(atdata.Dataset[CleanSample](str(tmp_path / "o" / "*.tar")).head(100)) == 10

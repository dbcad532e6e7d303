"""End to end on loopback: shards uploaded to a bucket on the local S3 API server (moto),
their R2-format events delivered through the Cloudflare Worker running in workerd
(miniflare) to ``atdata serve`` (real uvicorn, in a subprocess), and the pipeline's
output shards and manifests appearing under ``processed/``.

Needs Node 20+ and ``npm ci`` in workers/r2-to-atdata (skipped otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import atdata
from atdata.pipeline import ledger_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKER_DIR = ROOT / "workers" / "r2-to-atdata"
PIPELINES = ROOT / "tests" / "e2e" / "pipelines_e2e.py"
TOKEN = "e2e-token-" + uuid.uuid4().hex


@atdata.packable
class RawSample:
    text: str
    value: int


@atdata.packable
class CleanSample:
    text: str
    doubled: int


# -- fixtures: buckets, the server, the Worker ------------------------------------------------


class Env:
    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.s3 = boto3.client("s3", endpoint_url=endpoint)
        self.bucket = f"e2e-{uuid.uuid4().hex[:10]}"
        self.r2_bucket = f"e2e-r2-{uuid.uuid4().hex[:10]}"
        for name in (self.bucket, self.r2_bucket):
            self.s3.create_bucket(Bucket=name)

    def upload(self, key: str, n: int = 50, offset: int = 0, bucket: str | None = None) -> str:
        """Put a shard of ``n`` RawSamples at ``key``; returns its ETag (no quotes)."""
        body = shard_bytes(n, offset)
        answer = self.s3.put_object(Bucket=bucket or self.bucket, Key=key, Body=body)
        return str(answer["ETag"]).strip('"')

    def keys(self, prefix: str, bucket: str | None = None) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket or self.bucket, Prefix=prefix
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def records(self, key: str, bucket: str | None = None, scheme: str = "s3") -> list[Any]:
        ledger = ledger_for(f"{scheme}://{bucket or self.bucket}/processed")
        return [r for r in ledger.records() if r.key == key]


def shard_bytes(n: int, offset: int = 0) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.tar")
        with atdata.ShardWriter(path, manifest=False) as sink:
            for i in range(n):
                sink.write(RawSample(text=f"s{i + offset}", value=i + offset))
        return Path(path).read_bytes()


def r2_event(bucket: str, key: str, etag: str, action: str = "PutObject") -> dict[str, Any]:
    return {
        "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
        "bucket": bucket,
        "object": {"key": key, "size": 1, "eTag": etag},
        "action": action,
        "eventTime": "2026-04-01T12:00:00.000Z",
    }


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def env(s3_server: str) -> Env:
    return Env(s3_server)


def server_env(env: Env) -> dict[str, str]:
    return {
        **os.environ,
        "ATDATA_TOKEN": TOKEN,
        "ATDATA_E2E_BUCKET": env.bucket,
        "ATDATA_E2E_R2_BUCKET": env.r2_bucket,
        "R2_ENDPOINT_URL": env.endpoint,
        "R2_ACCESS_KEY_ID": "testing",
        "R2_SECRET_ACCESS_KEY": "testing",
        "PYTHONUNBUFFERED": "1",
    }


class Server:
    """``atdata serve`` in a subprocess; its log is kept for failure messages."""

    def __init__(self, env: Env) -> None:
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atdata.cli._pipeline_commands",
                "serve",
                "--pipelines",
                str(PIPELINES),
                "--port",
                "0",
                "--no-access-log",
            ],
            env=server_env(env),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if "Uvicorn running on" in line:
                self.url = line.split("Uvicorn running on ", 1)[1].split()[0]
                break
        else:
            raise AssertionError("atdata serve did not start:\n" + "".join(self.log))
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)
        self._drainer.join(30)  # it ends at EOF, now that the server has exited
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[Server]:
    srv = Server(env)
    yield srv
    srv.stop()


class Bridge:
    """The Worker under miniflare, delivering queue batches to the server (scripts/deliver.mjs)."""

    def __init__(self, ingest_url: str) -> None:
        self.proc = subprocess.Popen(
            ["node", "scripts/deliver.mjs", "--ingest-url", ingest_url, "--token", TOKEN],
            cwd=WORKER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = self._read()
        assert ready == {"ready": True}, ready
        self.next_id = 0

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("the miniflare helper exited")
        return json.loads(line)

    def deliver(self, messages: list[Any], worker: str = "main") -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.next_id += 1
        self.proc.stdin.write(
            json.dumps({"id": self.next_id, "messages": messages, "worker": worker}) + "\n"
        )
        self.proc.stdin.flush()
        answer = self._read()
        assert answer.get("id") == self.next_id and "error" not in answer, answer
        return answer

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def bridge(server: Server) -> Iterator[Bridge]:
    if shutil.which("node") is None or not (WORKER_DIR / "node_modules" / "miniflare").is_dir():
        reason = "needs Node 20+ and `npm ci` in workers/r2-to-atdata (scripts/test.sh runs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run the Worker end to end, never skip it
        pytest.skip(reason)
    b = Bridge(f"{server.url}/ingest")
    yield b
    b.stop()


def done(env: Env, key: str, count: int = 1, **kw: Any) -> Callable[[], list[Any]]:
    def check() -> list[Any]:
        records = [r for r in env.records(key, **kw) if r.state == "done"]
        failed = [r for r in env.records(key, **kw) if r.state == "failed"]
        assert not failed, failed[0].error
        return records if len(records) >= count else []

    return check


# -- the tests -------------------------------------------------------------------------------------


def test_event_through_the_worker_produces_output_and_manifests(
    env: Env, server: Server, bridge: Bridge
) -> None:
    key = "incoming/train-000001.tar"
    etag = env.upload(key, n=1000)
    result = bridge.deliver([r2_event(env.bucket, key, etag)])
    assert result["acked"] == [0] and result["retried"] == []
    (record,) = wait_for(done(env, key), "the pipeline run", timeout=120)
    prefix = f"processed/train-000001/{etag[:16]}"
    assert record.output_prefix == f"s3://{env.bucket}/{prefix}"
    files = env.keys(prefix + "/")
    for name in ("train-000001.tar", "train-000001.manifest.parquet", "train-000001.manifest.json"):
        assert f"{prefix}/{name}" in files, files
    out = atdata.Dataset[CleanSample](f"s3://{env.bucket}/{prefix}/train-000001.tar")
    assert len(out) == 1000  # from the manifest
    assert [s.doubled for s in out.head(3)] == [0, 2, 4] and out.head(1)[0].text == "S0"
    assert record.outputs == [f"s3://{env.bucket}/{prefix}/train-000001.tar"]


def test_duplicate_and_concurrent_deliveries_give_one_output(
    env: Env, server: Server, bridge: Bridge
) -> None:
    key = "incoming/dup-000001.tar"
    etag = env.upload(key, n=200)
    event = r2_event(env.bucket, key, etag)
    # three copies in one batch: the Worker forwards them concurrently
    assert bridge.deliver([event, event, event])["acked"] == [0, 1, 2]
    assert bridge.deliver([event])["acked"] == [0]  # and a later redelivery
    (record,) = wait_for(done(env, key), "the pipeline run")
    assert bridge.deliver([event])["acked"] == [0]  # after it finished
    assert record.attempts == 1
    assert len(env.records(key)) == 1
    outputs = [k for k in env.keys("processed/dup-000001/") if k.endswith(".tar")]
    assert outputs == [f"processed/dup-000001/{etag[:16]}/dup-000001.tar"]
    from atdata.processing import job_status

    status = job_status(record.output_prefix)
    assert len(status.job.runs) == 1 and status.counts["done"] == 1  # the map ran once


def test_a_new_upload_of_the_same_key_gives_a_new_output(
    env: Env, server: Server, bridge: Bridge
) -> None:
    key = "incoming/reup-000001.tar"
    first = env.upload(key, n=10)
    bridge.deliver([r2_event(env.bucket, key, first)])
    wait_for(done(env, key), "the first run")
    second = env.upload(key, n=20, offset=100)
    assert second != first
    bridge.deliver([r2_event(env.bucket, key, second)])
    records = wait_for(done(env, key, count=2), "the second run")
    assert {r.etag for r in records} == {first, second}
    new = atdata.Dataset[CleanSample](
        f"s3://{env.bucket}/processed/reup-000001/{second[:16]}/*.tar"
    )
    assert len(new) == 20 and new.head(1)[0].doubled == 200
    old = atdata.Dataset[CleanSample](f"s3://{env.bucket}/processed/reup-000001/{first[:16]}/*.tar")
    assert len(old) == 10  # the earlier output is left as it was


def test_requests_without_the_token_or_malformed_change_nothing(
    env: Env, server: Server, bridge: Bridge
) -> None:
    key = "incoming/refused-000001.tar"  # never uploaded: a run would fail and be recorded
    event = r2_event(env.bucket, key, "etag-refused-0001")
    # through the Worker, with a token the server does not accept: retried, not acked
    result = bridge.deliver([event], worker="wrong-token")
    assert result["acked"] == [] and result["retried"] == [0]
    c = server.client
    assert c.post("/ingest", json=event).status_code == 401
    assert (
        c.post(
            "/ingest", json=event, headers={"Authorization": "Bearer nope-nope-nope-nope"}
        ).status_code
        == 401
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = c.post("/ingest", content=b'{"bucket": ', headers=auth)
    assert bad.status_code == 400 and bad.json()["error"].startswith("malformed JSON")
    missing = c.post("/ingest", json={**event, "object": {"key": key}}, headers=auth)
    assert missing.status_code == 422 and "'object.eTag'" in missing.json()["error"]
    huge = c.post("/ingest", json={**event, "pad": "x" * 100_000}, headers=auth)
    assert huge.status_code == 413
    unknown = c.post(
        "/jobs",
        json={
            "input": f"s3://{env.bucket}/incoming/*.tar",
            "output_prefix": f"s3://{env.bucket}/x",
            "processor": "nope",
        },
        headers=auth,
    )
    assert unknown.status_code == 422 and "unknown processor 'nope'" in unknown.json()["error"]
    time.sleep(0.5)
    assert env.records(key) == []
    assert env.keys("processed/refused-000001/") == [] and env.keys("x/") == []


def test_polling_picks_up_a_shard_whose_event_was_lost(env: Env, server: Server) -> None:
    key = "incoming/lost-000001.tar"
    env.upload(key, n=30)  # no event is ever sent

    def poll() -> dict[str, Any]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "atdata.cli._pipeline_commands",
                "pipeline",
                "poll",
                f"s3://{env.bucket}/incoming",
                "--pipelines",
                str(PIPELINES),
                "--json",
            ],
            env=server_env(env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        report: dict[str, Any] = json.loads(proc.stdout)
        return report

    report = poll()
    mine = [r for r in report["runs"] if r["key"] == key]
    assert [(r["status"], r["state"]) for r in mine] == [("accepted", "done")]
    (record,) = env.records(key)
    assert (
        f"{record.output_prefix.split(env.bucket + '/', 1)[1]}/lost-000001.manifest.json"
        in env.keys("processed/lost-000001/")
    )
    again = poll()  # nothing new: every shard is in the ledger already
    assert again["accepted"] == 0 and again["duplicate"] == again["listed"]


def test_r2_trigger(
    env: Env, server: Server, bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "incoming/r2-000001.tar"
    etag = env.upload(key, n=40, bucket=env.r2_bucket)
    assert bridge.deliver([r2_event(env.r2_bucket, key, etag)])["acked"] == [0]
    # r2:// goes through R2_ENDPOINT_URL: here (and in the server) the same loopback server
    monkeypatch.setenv("R2_ENDPOINT_URL", env.endpoint)
    (record,) = wait_for(done(env, key, bucket=env.r2_bucket, scheme="r2"), "the r2 run")
    assert record.shard_url == f"r2://{env.r2_bucket}/{key}"
    assert record.output_prefix.startswith(f"r2://{env.r2_bucket}/processed/r2-000001/")
    assert any(k.endswith("r2-000001.manifest.json") for k in env.keys("processed/", env.r2_bucket))


def test_jobs_endpoint_runs_a_map_in_the_background(env: Env, server: Server) -> None:
    for i in range(3):
        env.upload(f"jobs-in/part-{i:06d}.tar", n=25, offset=25 * i)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    started = server.client.post(
        "/jobs",
        json={
            "input": f"s3://{env.bucket}/jobs-in/*.tar",
            "output_prefix": f"s3://{env.bucket}/jobs-out",
            "processor": "transform_sample",
        },
        headers=auth,
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["shard_count"] == 3

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = server.client.get(body["status_url"], headers=auth).json()
        return status if status.get("state") in ("done", "failed", "partial") else None

    status = wait_for(finished, "the map job")
    assert status["state"] == "done" and status["counts"] == {"done": 3, "failed": 0, "pending": 0}
    out = atdata.Dataset[CleanSample](f"s3://{env.bucket}/jobs-out/*.tar")
    assert sorted(s.doubled for s in out) == [2 * i for i in range(75)]


def test_ctrl_c_stops_the_server_once_the_events_in_flight_are_done(env: Env) -> None:
    import signal

    own = Server(env)  # not the module's: this one is stopped by the test
    key = "incoming/ctrl-c-000001.tar"
    etag = env.upload(key, n=5000)
    answer = own.client.post(
        "/ingest",
        json=r2_event(env.bucket, key, etag),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 202, answer.text
    own.proc.send_signal(signal.SIGINT)  # as Ctrl-C does, the moment the event is accepted
    own.proc.wait(120)
    own.stop()  # (it has exited: this closes the client and the log)

    log = "".join(own.log)
    assert own.proc.returncode == 0 and "Traceback" not in log, log
    assert "Shutting down" in log
    (record,) = done(env, key)()  # finished before the server exited, not left claimed
    assert len(atdata.Dataset[CleanSample](record.outputs)) == 5000

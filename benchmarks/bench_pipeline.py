"""Benchmark the pipeline dispatcher: event-to-manifest latency and /ingest throughput.

Everything runs on loopback: an S3 API server (moto's server mode) and
``atdata serve`` (real uvicorn, in a subprocess), driven by an HTTP client in
this process.

1. **Latency**: a 1,000-sample shard is uploaded under ``incoming/``; the clock
   starts when its R2 event is sent to ``POST /ingest`` and stops when the
   output shard's ``.manifest.json`` (committed last) is visible in the bucket.
   Median (and min/max) over ``--runs`` shards, for the pipeline's map on the
   ``inline`` executor and on the default ``local`` executor (its warm workers,
   started with ``atdata serve`` and kept across events); target: under 1 s.
2. **Throughput**: distinct events for a pipeline whose body does no work are
   sent concurrently for a bounded run; the rate is events answered 202 per
   second. "None lost" is then checked: every event has exactly one ledger
   record and every record reaches ``done``. Measured with the ledger on local
   disk (SQLite) and on the S3 server (one conditional PUT per claim). Each
   event names a tiny object uploaded beforehand (not timed), so each run's
   check that its object version is still current is one HEAD, as in
   production. The dispatcher's CPU time per event is printed too, while
   answering and including the runs: unlike the rate, it hardly moves when
   other work shares the cores (Linux only).

Usage:
    python benchmarks/bench_pipeline.py            # 20 latency runs, 5,000 events
    python benchmarks/bench_pipeline.py --quick    # 5 latency runs, 1,000 events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

import atdata

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-" + uuid.uuid4().hex

PIPELINES = """
import os
import atdata
from atdata.processing import processor

BUCKET = os.environ["BENCH_BUCKET"]


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


def _maps(executor):
    def process(shard_url):
        ds = atdata.Dataset[RawSample](shard_url)
        if executor is None:
            return ds.map(transform_sample)
        return ds.map(transform_sample, executor=executor)
    return process


atdata.pipeline(trigger=f"s3://{BUCKET}/incoming-inline", output=f"s3://{BUCKET}/out-inline",
                name="bench_inline")(_maps("inline"))
atdata.pipeline(trigger=f"s3://{BUCKET}/incoming-local", output=f"s3://{BUCKET}/out-local",
                name="bench_local")(_maps(None))
atdata.pipeline(trigger=f"s3://{BUCKET}/events-sqlite", output=os.environ["BENCH_LOCAL_OUT"],
                name="bench_noop_sqlite")(lambda url: None)
atdata.pipeline(trigger=f"s3://{BUCKET}/events-s3", output=f"s3://{BUCKET}/out-noop",
                name="bench_noop_s3")(lambda url: None)


"""


@atdata.packable
class RawSample:
    text: str
    value: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    try:
        yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def dispatcher(pipelines: Path, env: dict[str, str], threads: int) -> Iterator[tuple[str, int]]:
    """``atdata serve`` in a subprocess; yields its base URL and process id."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atdata.cli._pipeline_commands",
            "serve",
            "--pipelines",
            str(pipelines),
            "--port",
            "0",
            "--no-access-log",
            "--threads",
            str(threads),
        ],
        env={**os.environ, **env, "ATDATA_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    log = []
    for line in proc.stderr:
        log.append(line)
        if "Uvicorn running on" in line:
            url = line.split("Uvicorn running on ", 1)[1].split()[0]
            break
    else:
        raise SystemExit("atdata serve did not start:\n" + "".join(log))
    drain = threading.Thread(target=lambda: [log.append(x) for x in proc.stderr], daemon=True)  # type: ignore[union-attr]
    drain.start()
    try:
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)
        drain.join(10)
        proc.stderr.close()


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) process ``pid`` has used; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after the command name: state is field 3 of stat(5), utime and stime are 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shard_bytes(n: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.tar")
        with atdata.ShardWriter(path, manifest=False) as sink:
            for i in range(n):
                sink.write(RawSample(text=f"sample text {i}", value=i))
        return Path(path).read_bytes()


def event(bucket: str, key: str, etag: str) -> dict[str, Any]:
    return {
        "account": "bench",
        "bucket": bucket,
        "action": "PutObject",
        "object": {"key": key, "size": 1, "eTag": etag},
        "eventTime": "2026-04-01T12:00:00.000Z",
    }


# -- 1. latency -------------------------------------------------------------------------------


def latency(url: str, s3: Any, bucket: str, flavour: str, runs: int, samples: int) -> list[float]:
    body = shard_bytes(samples)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(runs + 1):  # the first run warms up imports and connections
            key = f"incoming-{flavour}/shard-{i:06d}.tar"
            etag = str(s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]).strip('"')
            manifest = f"out-{flavour}/shard-{i:06d}/{etag[:16]}/shard-{i:06d}.manifest.json"
            start = time.perf_counter()
            answer = client.post("/ingest", json=event(bucket, key, etag), headers=auth)
            assert answer.status_code == 202, answer.text
            deadline = start + 120
            while True:
                with contextlib.suppress(Exception):
                    s3.head_object(Bucket=bucket, Key=manifest)
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"no manifest at {manifest} after 120 s")
                time.sleep(0.005)
            if i:
                times.append(time.perf_counter() - start)
    return times


# -- 2. throughput ------------------------------------------------------------------------


def upload_objects(s3: Any, bucket: str, prefix: str, n: int) -> list[tuple[str, str]]:
    """Put ``n`` tiny objects under ``prefix``; returns their ``(key, etag)``."""
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> tuple[str, str]:
        key = f"{prefix}/e-{i:08d}.tar"
        answer = s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        return key, str(answer["ETag"]).strip('"')

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(put, range(n)))


async def blast(
    url: str, bucket: str, objects: list[tuple[str, str]], concurrency: int
) -> tuple[float, list[tuple[str, str, int]]]:
    """Send one event per ``(key, etag)`` over ``concurrency`` keep-alive connections.

    A minimal HTTP/1.1 client on asyncio streams, so the load generator costs
    little CPU next to the server (an httpx AsyncClient saturates first).
    Returns the elapsed time and ``(key, etag, HTTP status)`` per event.
    """
    import json

    host, _, port = url.removeprefix("http://").partition(":")
    todo = iter(objects)
    sent: list[tuple[str, str, int]] = []

    def request(key: str, etag: str) -> bytes:
        body = json.dumps(event(bucket, key, etag)).encode()
        head = (
            f"POST /ingest HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for key, etag in todo:
                writer.write(request(key, etag))
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                sent.append((key, etag, status))
        finally:
            writer.close()
            await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - start, sent


def settle(
    name: str,
    trigger: str,
    output: str,
    bucket: str,
    sent: list[tuple[str, str, int]],
    timeout: float,
) -> tuple[int, int, float]:
    """Wait until every accepted event's ledger record is ``done``.

    Returns (accepted events with a record, events done, seconds waited).
    Records are looked up by id, as the dispatcher computes it, rather than by
    listing the whole ledger.
    """
    from concurrent.futures import ThreadPoolExecutor

    from atdata.pipeline import ObjectEvent, Pipeline, Trigger, ledger_for

    probe = Pipeline(lambda url: None, Trigger.parse(trigger), output, name=name)
    ids = [probe.event_id(ObjectEvent(bucket, k, e)) for k, e, code in sent if code == 202]
    ledger = ledger_for(output)
    state: dict[str, str | None] = dict.fromkeys(ids)
    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        while True:
            waiting = [i for i, st in state.items() if st != "done"]
            for event_id, record in zip(waiting, pool.map(ledger.get, waiting), strict=True):
                state[event_id] = None if record is None else record.state
            if all(st == "done" for st in state.values()) or time.monotonic() - start > timeout:
                break
            time.sleep(0.2)
    recorded = sum(st is not None for st in state.values())
    done = sum(st == "done" for st in state.values())
    return recorded, done, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 latency runs, 1,000 events")
    parser.add_argument("--runs", type=int, default=20, help="latency runs per executor")
    parser.add_argument("--samples", type=int, default=1000, help="samples per shard")
    parser.add_argument("--events", type=int, default=5000, help="events in the throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--threads", type=int, default=4, help="dispatcher background threads")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per ledger")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-executor latency")
    parser.add_argument(
        "--skip-latency", action="store_true", help="skip part 1 (measure the acceptance rate only)"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.events = 5, 1000

    import boto3

    print(
        f"bench_pipeline: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"command: {' '.join(['python', *sys.argv])}"
    )
    with s3_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        pipelines = Path(tmp) / "bench_pipelines.py"
        pipelines.write_text(PIPELINES)
        local_out = os.path.join(tmp, "noop-out")
        env = {"BENCH_BUCKET": bucket, "BENCH_LOCAL_OUT": local_out}
        with dispatcher(pipelines, env, args.threads) as (url, server_pid):
            if not args.skip_latency:
                print(
                    f"\n1. event at /ingest -> output manifest committed ({args.samples}-sample "
                    f"shard, S3 server on loopback, median of {args.runs})"
                )
            for flavour in ("inline", "local"):
                if args.skip_latency or (flavour == "local" and args.skip_local):
                    continue
                times = latency(url, s3, bucket, flavour, args.runs, args.samples)
                median = statistics.median(times)
                print(
                    f"   map executor={flavour:<7} median {median:6.3f} s   "
                    f"min {min(times):6.3f} s   max {max(times):6.3f} s   "
                    f"(target < 1 s: {'met' if median < 1 else 'NOT met'}; "
                    f"load {os.getloadavg()[0]:.1f})"
                )

            print(
                f"\n2. /ingest acceptance rate ({args.events} distinct events, "
                f"{args.concurrency} in flight, one request per event)"
            )
            for label, name, prefix, output in (
                ("ledger on local disk (SQLite)", "bench_noop_sqlite", "events-sqlite", local_out),
                (
                    "ledger on the S3 server",
                    "bench_noop_s3",
                    "events-s3",
                    f"s3://{bucket}/out-noop",
                ),
            ):
                rates = []
                for run in range(args.repeat):
                    objects = upload_objects(s3, bucket, f"{prefix}/run{run}", args.events)
                    cpu_before = cpu_seconds(server_pid)
                    elapsed, sent = asyncio.run(blast(url, bucket, objects, args.concurrency))
                    cpu_answering = cpu_seconds(server_pid)
                    accepted = sum(code == 202 for _, _, code in sent)
                    recorded, done, waited = settle(
                        name, f"s3://{bucket}/{prefix}", output, bucket, sent, timeout=900
                    )
                    cpu_after = cpu_seconds(server_pid)
                    rates.append(accepted / elapsed)
                    print(
                        f"   {label:<30} run {run + 1}: {accepted / elapsed:6.0f} events/s  "
                        f"({accepted}/{args.events} answered 202 in {elapsed:.2f} s; "
                        f"{recorded} claimed, {done} done {waited:.1f} s later, "
                        f"{accepted - done} lost)"
                    )
                    if cpu_before is not None and cpu_answering and cpu_after and accepted:
                        print(
                            f"   {'':<30} server CPU per event: "
                            f"{(cpu_answering - cpu_before) / accepted * 1000:.2f} ms while "
                            f"answering, {(cpu_after - cpu_before) / accepted * 1000:.2f} ms "
                            "with its run"
                        )
                    others = sorted({code for _, _, code in sent} - {202})
                    if others:
                        print(f"   other answers: {others}")
                print(
                    f"   {label:<30} median {statistics.median(rates):6.0f} events/s, "
                    f"best {max(rates):.0f}"
                )


if __name__ == "__main__":
    main()

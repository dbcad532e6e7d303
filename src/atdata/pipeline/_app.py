"""The dispatcher's HTTP face: a Starlette ASGI app.

Routes (every one but ``/healthz`` needs ``Authorization: Bearer <token>``):

- ``GET  /healthz`` — liveness, no token;
- ``POST /ingest`` — one R2 event notification; 202 when a pipeline run was
  claimed and started, 200 for duplicates, superseded versions and ignored
  events (so the queue acks them), 4xx for requests that can never succeed, 503
  when the ledger is unreachable (so the queue retries). Only the ledger is
  consulted before answering;
- ``POST /jobs`` — ``{input, output_prefix, processor}``: start a map job in
  the background; 202 with the job id and shard count;
- ``GET  /jobs/{id}`` — the job's per-shard state, counts and errors;
- ``GET  /pipelines`` and ``GET /pipelines/{name}/events/{event_id}``;
- ``GET  /metrics`` — atdata's metrics in the Prometheus text format
  (:func:`atdata.metrics_text`); token-protected like the rest, so configure
  the scraper with ``authorization: {credentials: <token>}``.

Every error is ``{"error": "<one line>"}``; a rejected request runs nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from atdata import observability as obs
from atdata.errors import (
    InvalidEventError,
    LedgerError,
    MissingDependencyError,
    PipelineError,
    StorageError,
    UnreadableURLError,
)
from atdata.pipeline._events import ObjectEvent
from atdata.pipeline._registry import PipelineRegistry
from atdata.pipeline._runners import Runner, ThreadRunner
from atdata.pipeline._service import JobConflictError, Service

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["DEFAULT_MAX_BODY", "TOKEN_ENV", "create_app"]

TOKEN_ENV = "ATDATA_TOKEN"
DEFAULT_MAX_BODY = 64 * 1024
_MIN_TOKEN = 16


class _RejectError(Exception):
    """An HTTP error answer: status code and one line of reason."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = " ".join(reason.split())[:500]
        super().__init__(self.reason)


def create_app(
    registry: PipelineRegistry | None = None,
    *,
    token: str | None = None,
    service: Service | None = None,
    runner: Runner | None = None,
    workers: int = 4,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    lease_seconds: float = 3600.0,
    max_attempts: int | None = 3,
    job_executor: Any = "local",
) -> Starlette:
    """Build the dispatcher's ASGI app (serve it with uvicorn, or on Modal).

    Args:
        registry: pipelines and processors (default: ``atdata.pipeline.default_registry``).
        token: the bearer token clients must send (default: ``$ATDATA_TOKEN``).
        service: a ready :class:`~atdata.pipeline.Service`; else one is built from
            the other arguments.
        runner: where claimed runs go (default: a pool of ``workers`` threads).
        workers: background threads when no runner is given.
        max_body_bytes: larger request bodies are refused with 413.
        lease_seconds: a run claimed longer ago than this without finishing is retried.
        max_attempts: a failing event is retried this often, then left failed.
        job_executor: the executor ``POST /jobs`` map jobs use.

    Raises:
        PipelineError: no token is configured, or it is too short.
        MissingDependencyError: starlette is not installed.

    Example:
        >>> app = create_app(token="a-long-random-secret-token")
        >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse
        from starlette.responses import Response as PlainResponse
        from starlette.routing import Route
    except ImportError:
        raise MissingDependencyError("starlette", "serve", "The dispatcher app") from None

    secret = token if token is not None else os.environ.get(TOKEN_ENV, "")
    if len(secret) < _MIN_TOKEN:
        raise PipelineError(
            f"the dispatcher needs a bearer token of at least {_MIN_TOKEN} characters: set "
            f"{TOKEN_ENV} (e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`)"
        )
    expected = secret.encode("utf-8")
    if service is None:
        service = Service(
            registry,
            runner=runner if runner is not None else ThreadRunner(workers),
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            job_executor=job_executor,
        )
    svc = service

    def reply(data: Any, status: int = 200) -> Response:
        return JSONResponse(data, status_code=status)

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            scheme, _, sent = request.headers.get("authorization", "").partition(" ")
            # header text is latin-1 decoded bytes: encoding back gives the bytes sent
            sent_bytes = sent.strip().encode("latin-1", "replace")
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent_bytes, expected):
                answer = reply({"error": "missing or wrong bearer token"}, 401)
                answer.headers["WWW-Authenticate"] = 'Bearer realm="atdata"'
                return answer
            try:
                return await handler(request)
            except _RejectError as exc:
                return reply({"error": exc.reason}, exc.status)
            except InvalidEventError as exc:
                return reply({"error": exc.reason}, 422)
            except JobConflictError as exc:
                return reply({"error": str(exc)}, 409)
            except UnreadableURLError as exc:
                return reply({"error": _line(exc)}, 422)
            except (LedgerError, StorageError) as exc:
                obs.log_event("dispatcher storage error", level="error", error=_line(exc))
                return reply({"error": f"storage unavailable, retry later: {_line(exc)}"}, 503)
            except PipelineError as exc:
                return reply({"error": _line(exc)}, 503)

        endpoint.__name__ = handler.__name__
        return endpoint

    async def read_json(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            raise _RejectError(413, f"request body larger than {max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise _RejectError(413, f"request body larger than {max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise _RejectError(400, "empty request body: expected JSON")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _RejectError(400, f"malformed JSON: {exc}") from None
        except RecursionError:
            raise _RejectError(400, "malformed JSON: nested too deeply") from None

    async def healthz(request: Request) -> Response:
        return reply({"status": "ok"})

    async def ingest(request: Request) -> Response:
        event = ObjectEvent.from_json(await read_json(request))
        pipelines, why = svc.route(event)
        if not pipelines:
            # decided without touching storage, so answered without a thread hop
            obs.metrics.events_received.inc()
            obs.metrics.events_ignored.inc()
            return reply({"status": "ignored", "reason": why})
        result = await run_in_threadpool(svc.ingest, event)
        return reply(result.to_json(), 202 if result.status == "accepted" else 200)

    async def start_job(request: Request) -> Response:
        body = await read_json(request)
        started = await run_in_threadpool(svc.start_job, body)
        started["status_url"] = f"/jobs/{started['job_id']}"
        return reply(started, 202)

    async def get_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        status = await run_in_threadpool(svc.job_status, job_id)
        if status is None:
            raise _RejectError(404, f"no job {job_id[:60]} (no ledger under its output prefix yet)")
        return reply(status)

    async def list_pipelines(request: Request) -> Response:
        return reply(svc.registry.describe())

    async def get_event(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            pipeline = svc.registry.get(name)
        except PipelineError as exc:
            raise _RejectError(404, str(exc)) from None
        event_id = request.path_params["event_id"]
        record = await run_in_threadpool(svc.ledger(pipeline).get, event_id)
        if record is None:
            raise _RejectError(404, f"pipeline {name!r} has no event {event_id[:64]}")
        return reply(record.to_json())

    async def metrics(request: Request) -> Response:
        # The in-process text format or, after enable_prometheus(), that registry's.
        return PlainResponse(
            obs.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(svc.close)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/ingest", guarded(ingest), methods=["POST"]),
        Route("/jobs", guarded(start_job), methods=["POST"]),
        Route("/jobs/{job_id}", guarded(get_job), methods=["GET"]),
        Route("/pipelines", guarded(list_pipelines), methods=["GET"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/pipelines/{name}/events/{event_id}", guarded(get_event), methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return reply({"error": str(getattr(exc, "detail", "")) or "error"}, status)

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.service = svc
    return app


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500] or type(exc).__name__

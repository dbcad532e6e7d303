"""``Dispatcher``: the pipeline dispatcher as a Modal web endpoint plus a worker function.

Two Modal functions are registered on the user's ``modal.App``:

- ``<name>-dispatcher``: the same ASGI app ``atdata serve`` runs
  (``POST /ingest``, ``POST /jobs``...), as a concurrent web endpoint. It takes
  the ledger claim before answering, then *spawns* the worker;
- ``<name>-worker``: runs one claimed task (a pipeline for one event, or one
  map job) in its own container.

Both are module-level functions of this module, so containers import them by
reference (no pickling); what they need to know (the modules that define the
pipelines, the app and worker names) travels in environment variables.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from atdata.errors import MissingDependencyError, PipelineError

if TYPE_CHECKING:
    import modal
    from starlette.applications import Starlette

    from atdata.pipeline._runners import Execute, Task

__all__ = ["Dispatcher", "ModalRunner"]

ENV_MODULES = "ATDATA_PIPELINES"
ENV_APP = "ATDATA_MODAL_APP"
ENV_WORKER = "ATDATA_MODAL_WORKER"
ENV_LEASE = "ATDATA_LEASE_SECONDS"
ENV_ATTEMPTS = "ATDATA_MAX_ATTEMPTS"
ENV_EXECUTOR = "ATDATA_JOB_EXECUTOR"


class ModalRunner:
    """Runs each claimed task by spawning the dispatcher's worker function on Modal.

    Args:
        app_name: the deployed app's name.
        function_name: the worker function's name in it.
        function: a function handle to use instead of looking one up (tests).
    """

    def __init__(self, app_name: str, function_name: str, *, function: Any = None) -> None:
        self.app_name = app_name
        self.function_name = function_name
        self._function = function

    def submit(self, task: Task, execute: Execute) -> None:
        if self._function is None:
            import modal

            self._function = modal.Function.from_name(self.app_name, self.function_name)
        self._function.spawn(task)

    def close(self, wait: bool = True) -> None:
        return None


class Dispatcher:
    """Register atdata's dispatcher on a ``modal.App``: a web endpoint and a shard worker.

    Deploy with ``modal deploy my_deploy.py``; the endpoint's URL (shown by
    ``modal deploy``) plus ``/ingest`` is the Worker's ``ATDATA_INGEST_URL``.

    Args:
        app: the Modal app (it must have a name: functions are looked up by it).
        pipelines: modules to import in the containers; they define the
            ``@atdata.pipeline`` s and processors. Default: the calling module.
        name: prefix of the two functions' names.
        image: the container image; default: Debian slim with atdata's
            dependencies and the sources of atdata and of ``pipelines`` added.
            A custom image must provide atdata and those modules itself.
        secrets: Modal secrets; one must set ``ATDATA_TOKEN``, and storage
            credentials (``AWS_*`` or ``R2_*``) as the pipelines need.
        cpu, memory, gpu, timeout: the worker's resources and time limit (seconds).
        max_concurrent_requests: requests one dispatcher container serves at once.
        label: the web endpoint's URL label.
        lease_seconds, max_attempts: the ledger policy (see ``atdata.pipeline.Service``).
        job_executor: the executor ``POST /jobs`` map jobs use inside the worker.

    Attributes:
        web: the dispatcher's ``modal.Function`` (the ASGI web endpoint).
        worker: the worker's ``modal.Function``.

    Example:
        >>> import modal
        >>> app = modal.App("atdata-pipelines")
        >>> dispatcher = atdata.modal.Dispatcher(
        ...     app, pipelines=["my_pipelines"],
        ...     secrets=[modal.Secret.from_name("atdata")],
        ... )
        >>> dispatcher
        Dispatcher(app='atdata-pipelines', web='atdata-dispatcher', worker='atdata-worker',
                   pipelines=['my_pipelines'])
    """

    def __init__(
        self,
        app: modal.App,
        *,
        pipelines: Sequence[str] | None = None,
        name: str = "atdata",
        image: modal.Image | None = None,
        secrets: Sequence[modal.Secret] = (),
        cpu: float | None = None,
        memory: int | None = None,
        gpu: str | None = None,
        timeout: int = 3600,
        max_concurrent_requests: int = 100,
        label: str | None = None,
        lease_seconds: float = 3600.0,
        max_attempts: int | None = 3,
        job_executor: str = "local",
    ) -> None:
        try:
            import modal
        except ImportError:
            raise MissingDependencyError("modal", "modal", "atdata.modal.Dispatcher") from None
        if not app.name:
            raise PipelineError(
                "Dispatcher needs a named app, e.g. modal.App('atdata-pipelines'): the "
                "dispatcher finds its worker function by app name"
            )
        modules = list(pipelines) if pipelines is not None else _caller_modules()
        for module in modules:
            parts = module.split(".")
            if module.endswith(".py") or not all(part.isidentifier() for part in parts):
                raise PipelineError(
                    f"pipelines: {module!r} is not a module name; pass importable module names "
                    "such as 'my_pipelines'"
                )
        self.app = app
        self.modules = modules
        self.worker_name = f"{name}-worker"
        self.web_name = f"{name}-dispatcher"
        env = {
            ENV_MODULES: ",".join(modules),
            ENV_APP: app.name,
            ENV_WORKER: self.worker_name,
            ENV_LEASE: str(lease_seconds),
            ENV_ATTEMPTS: "" if max_attempts is None else str(max_attempts),
            ENV_EXECUTOR: job_executor,
        }
        self.env = env
        self.image = image if image is not None else default_image(modules)
        common: dict[str, Any] = {
            "image": self.image,
            "secrets": list(secrets),
            "env": env,
            "include_source": False,
        }
        self.worker: Any = app.function(
            name=self.worker_name, cpu=cpu, memory=memory, gpu=gpu, timeout=timeout, **common
        )(_worker)
        endpoint: Any = modal.concurrent(max_inputs=max_concurrent_requests)(
            modal.asgi_app(label=label)(_web)
        )
        self.web: Any = app.function(name=self.web_name, timeout=300, **common)(endpoint)

    def __repr__(self) -> str:
        return (
            f"Dispatcher(app={self.app.name!r}, web={self.web_name!r}, "
            f"worker={self.worker_name!r}, pipelines={self.modules!r})"
        )


def default_image(modules: Sequence[str]) -> modal.Image:
    """Debian slim, this Python, atdata's runtime dependencies, and the sources of
    atdata and ``modules`` (mounted at container start)."""
    import modal

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    roots = list(dict.fromkeys(["atdata", *(m.split(".")[0] for m in modules)]))
    return (
        modal.Image.debian_slim(python_version=version)
        .pip_install(*runtime_requirements())
        .add_local_python_source(*roots)
    )


def runtime_requirements() -> list[str]:
    """atdata's core requirements plus the ``serve`` and ``s3`` extras, from its metadata."""
    try:
        declared = importlib.metadata.requires("atdata") or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        declared = []
    out = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        marker = marker.replace("'", '"')
        if not marker.strip() or 'extra == "serve"' in marker or 'extra == "s3"' in marker:
            out.append(spec.strip())
    return out or [
        "numpy",
        "msgspec",
        "pyarrow",
        "duckdb",
        "fsspec",
        "braceexpand",
        "typer",
        "rich",
        "cloudpickle",
        "starlette",
        "uvicorn",
        "s3fs",
    ]


def _caller_modules() -> list[str]:
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame and frame.f_back else None  # __init__'s caller
        name = caller.f_globals.get("__name__", "") if caller else ""
    finally:
        del frame
    if not name or name == "__main__":
        raise PipelineError(
            "Dispatcher could not tell which module defines the pipelines; pass "
            "pipelines=['my_pipelines'] (importable module names)"
        )
    return [name]


# -- what runs in the containers --------------------------------------------------------


def _container_service(runner: Any) -> Any:
    from atdata.pipeline import Service, default_registry, load_pipelines

    modules = [m for m in os.environ.get(ENV_MODULES, "").split(",") if m]
    load_pipelines(modules)
    attempts = os.environ.get(ENV_ATTEMPTS, "3")
    return Service(
        default_registry,
        runner=runner,
        lease_seconds=float(os.environ.get(ENV_LEASE, "3600")),
        max_attempts=int(attempts) if attempts else None,
        job_executor=os.environ.get(ENV_EXECUTOR, "local"),
    )


def _web() -> Starlette:
    """The dispatcher container's ASGI app (``ATDATA_TOKEN`` comes from a Modal secret)."""
    from atdata.pipeline import create_app

    runner = ModalRunner(os.environ[ENV_APP], os.environ[ENV_WORKER])
    return create_app(service=_container_service(runner))


def _worker(task: dict[str, Any]) -> dict[str, Any]:
    """Run one claimed task (a pipeline for one event, or a map job) in this container."""
    from atdata.pipeline import InlineRunner

    service = _container_service(InlineRunner())
    try:
        result: dict[str, Any] = service.execute(task)
        return result
    finally:
        service.close()

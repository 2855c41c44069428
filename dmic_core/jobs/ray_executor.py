"""The ``ray`` executor: the same four methods as ``local``, with each task a Ray remote call.

Ray is the distributed engine (scheduling, worker processes, node failures); this module only
adapts it to :class:`~dmic_core.jobs.executor.Executor`. A remote call runs the very same
:func:`dmic_core.jobs.tasks.execute_task` as a local worker, so it settles its own task in the
SQLite store and writes its outputs under a temporary name before renaming them: every Ray
worker must therefore see the workspace and the input files at the same paths (one machine, or
a shared filesystem on a cluster).

Privacy: usage statistics are switched off before Ray is imported (``RAY_USAGE_STATS_ENABLED=0``)
and a local runtime starts without the dashboard, so nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dmic_core.jobs.executor import Executor, Outcome

#: Object store of a local runtime: tasks pass a small dict and return a word, so keep it small.
LOCAL_OBJECT_STORE_BYTES = 128 << 20


def _ray():
    """Import Ray with usage statistics off (must happen before the first ``import ray``)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    import ray

    return ray


def init_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to ``address`` or start a private local runtime with ``num_cpus`` CPUs.

    Returns True when this call started a local runtime (its caller shuts it down). Call it from
    the main thread where possible: Ray installs its signal handlers there.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}}
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as exc:  # wrong cluster, missing auth token, version skew
            from dmic_core.errors import DmicInputError

            raise DmicInputError(f"cannot connect to the Ray cluster at {address}: {_short(exc)}") from None
        return False
    ray.init(num_cpus=max(1, int(num_cpus)), include_dashboard=False, log_to_driver=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, runtime_env=runtime_env, logging_level=logging.WARNING)
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a wrong cluster address: Ray itself keeps retrying the connection for minutes."""
    import socket

    from dmic_core.errors import DmicInputError

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise DmicInputError(f"Ray address must look like host:port or ray://host:port, got {address!r}") from None
    except OSError as exc:
        raise DmicInputError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


def shutdown_ray() -> None:
    """End this process's Ray connection (and the local runtime it started)."""
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


def _remote_execute(workspace: str, task: dict[str, Any]) -> str:
    """Body of the remote call: run one claimed task to its end (see ``execute_task``)."""
    from dmic_core.jobs.tasks import execute_task

    return execute_task(workspace, task)


def _short(exc: BaseException) -> str:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text[:300]


class RayExecutor(Executor):
    """Tasks as Ray remote calls (one CPU each), on a cluster by address or a local runtime.

    Args:
        workspace: folder of the job store (visible to every Ray worker at the same path).
        workers: concurrent tasks; with ``use_cluster_cpus`` the cluster's CPU count instead.
        address: a running cluster (``ray://host:10001`` or ``host:6379``, or ``auto``); None
            starts a private local runtime with ``workers`` CPUs that ends with this executor.
        use_cluster_cpus: size the slots from ``ray.cluster_resources()``.
    """

    name = "ray"

    def __init__(self, workspace: str | Path, workers: int, address: str | None = None,
                 use_cluster_cpus: bool = False) -> None:
        super().__init__(workspace, workers)
        ray = _ray()
        self._ray = ray
        self._owns_runtime = init_ray(address, self.slots)
        if use_cluster_cpus:
            self.slots = max(1, int(ray.cluster_resources().get("CPU", self.slots)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_remote_execute)
        self._refs: dict[Any, int] = {}

    def submit(self, task: dict[str, Any]) -> None:
        if self.free() <= 0:
            raise RuntimeError("no free worker")
        ref = self._remote.remote(self.workspace, task)
        self._refs[ref] = int(task["id"])

    def running(self) -> set[int]:
        return set(self._refs.values())

    def poll(self, timeout: float = 0.0) -> list[Outcome]:
        if not self._refs:
            return []
        refs = list(self._refs)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        outcomes = []
        for ref in ready:
            task_id = self._refs.pop(ref)
            try:
                outcomes.append(Outcome(task_id, str(self._ray.get(ref))))
            except self._ray.exceptions.TaskCancelledError:
                outcomes.append(Outcome(task_id, "died", "ray task was cancelled (worker stopped)"))
            except self._ray.exceptions.RayError as exc:  # worker crashed, node lost, store failure
                outcomes.append(Outcome(task_id, "died", f"ray worker died: {_short(exc)}"))
        return outcomes

    def kill(self, task_id: int) -> None:
        for ref, tid in self._refs.items():
            if tid == task_id:
                self._ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Stop running tasks (their rows are requeued by the runner) and our local runtime."""
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or runtime gone
                pass
        self._refs.clear()
        if self._owns_runtime and self._ray.is_initialized():
            self._ray.shutdown()

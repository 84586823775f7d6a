"""Where benchmark units run: in this process, or on a Ray cluster (a local one or ``--ray-address``).

Both executors run the same :class:`~tada.bench.worker.Worker` code on the same units and hand
the results back to the driver, which alone writes the results store. Units are deterministic
(every clip's noise comes from its own seed, every batch holds the same clips whichever worker
runs it, and each worker uses the same number of threads), so the two executors give identical
numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import TadaError
from .plan import BenchSettings, Unit
from .worker import UnitResult, Worker

RAY_MISSING = "the Ray executor needs the ray package: pip install 'ray==2.60.0' (or use --executor local)"


class LocalExecutor:
    """Runs units one after another in this process (the model is loaded once)."""

    name = "local"

    def __init__(self, settings: BenchSettings, out: Path, threads: int | None = None, **plugins: Any):
        self.worker = Worker(settings, out, threads=threads, **plugins)

    def run(self, units: Sequence[Unit]) -> Iterator[UnitResult]:
        for unit in units:
            yield self.worker.run(unit)

    def close(self) -> None:
        pass


class _Actor:
    """A Ray actor around a Worker (one model per actor, kept warm between units)."""

    def __init__(self, settings: dict[str, Any], out: str, threads: int | None, plugins: dict[str, Any]):
        self.worker = Worker(settings, out, threads=threads, **plugins)

    def run(self, unit: Unit) -> UnitResult:
        return self.worker.run(unit)


class RayExecutor:
    """Runs units on Ray actors, as many as ``workers`` (default: the cluster's CPUs / threads)."""

    name = "ray"

    def __init__(
        self,
        settings: BenchSettings,
        out: Path,
        address: str | None = None,
        workers: int | None = None,
        threads: int | None = 1,
        **plugins: Any,
    ):
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise TadaError(RAY_MISSING) from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers or None
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TadaError(f"cannot start or reach Ray{' at ' + address if address else ''}: {exc}") from None
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        per = max(1, int(threads or 1))
        count = workers or max(1, cpus // per)
        gpus = 0.0
        if str(plugins.get("device", "cpu")).startswith("cuda"):  # the actors share the cluster's GPUs
            gpus = float(ray.cluster_resources().get("GPU", 0)) / count
            if gpus <= 0:
                raise TadaError("--device cuda with --executor ray needs a Ray cluster with GPUs; this one has none")
        remote = ray.remote(num_cpus=per, num_gpus=gpus)(_Actor)
        self.actors = [remote.remote(settings.as_dict(), str(out), threads, plugins) for _ in range(count)]
        self.pool = ActorPool(self.actors)

    def run(self, units: Sequence[Unit]) -> Iterator[UnitResult]:
        yield from self.pool.map_unordered(lambda actor, unit: actor.run.remote(unit), list(units))

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


def make_executor(
    kind: str,
    settings: BenchSettings,
    out: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    **plugins: Any,
) -> LocalExecutor | RayExecutor:
    if kind == "local":
        if address:
            raise TadaError("--ray-address needs --executor ray")
        return LocalExecutor(settings, out, threads=threads, **plugins)
    if kind == "ray":
        return RayExecutor(settings, out, address=address, workers=workers, threads=threads or 1, **plugins)
    raise TadaError(f"unknown executor {kind!r}; choose local or ray")

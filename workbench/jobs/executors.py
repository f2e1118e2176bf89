"""Where candidates are computed: in-process (the default) or on a Dask distributed cluster.

Both expose ``map_unordered(func, items, *args)`` yielding results as they finish; the runner (the only
writer of the store) consumes them. ``make_executor("dask://host:8786")`` connects to a running scheduler;
``make_executor("local", workers=4)`` starts a LocalCluster of 4 single-threaded worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["LocalExecutor", "DaskExecutor", "make_executor"]


class LocalExecutor:
    """Compute items one after another in this process."""

    name = "local"

    def map_unordered(self, func: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        for item in items:
            yield func(item, *args)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Compute items on a Dask cluster: an existing scheduler (``address``) or a new LocalCluster."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if address:
            self.name = f"dask://{address}"
            self.client = Client(address, timeout="20s")
        else:
            n = workers or 2
            self.name = f"dask-local[{n}]"
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            self.client = Client(self._cluster)

    def map_unordered(self, func: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        from dask.distributed import as_completed

        items = list(items)
        if not items:
            return
        futures = self.client.map(func, items, *[[a] * len(items) for a in args], pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(executor: str = "local", workers: int | None = None) -> LocalExecutor | DaskExecutor:
    """``"local"`` (with ``workers`` > 1: a Dask LocalCluster) or ``"dask://host:port"``."""
    if executor.startswith("dask://"):
        return DaskExecutor(address=executor[len("dask://") :])
    if executor == "dask" or (executor == "local" and workers and workers > 1):
        return DaskExecutor(workers=workers)
    if executor == "local":
        return LocalExecutor()
    raise ValueError(f"unknown executor {executor!r}; use 'local' or 'dask://host:port' (with --workers N)")

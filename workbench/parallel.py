"""One batch split over forked worker processes that inherit the caller's objects (Linux).

The engines decode in Python loops that use one core each, so a batch is split into contiguous parts
and each part runs in a forked process. A forked process inherits the model from the parent's memory:
nothing but the part's arguments and its results crosses a pipe.

>>> contiguous_parts(10, 3)
[range(0, 3), range(3, 7), range(7, 10)]
>>> def total(numbers, part):
...     return sum(numbers[part.start : part.stop])
>>> fork_map(total, list(range(10)), contiguous_parts(10, 2))  # doctest: +SKIP
[10, 35]
"""

from __future__ import annotations

import gc
import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["can_fork", "contiguous_parts", "fork_map"]

S = TypeVar("S")
T = TypeVar("T")


def can_fork() -> bool:
    """True where the fork start method exists (Linux); elsewhere work runs in this process."""
    return "fork" in multiprocessing.get_all_start_methods()


def contiguous_parts(
    n: int, workers: int, min_part: int = 1, what: str = "running", stacklevel: int = 3
) -> list[range]:
    """``range(n)`` cut into up to ``workers`` contiguous parts of at least ``min_part`` items (at least one part).

    Without fork there is one part, and a warning says so (``what`` names the work in it; ``stacklevel``
    as in :func:`warnings.warn`, counted from here).
    """
    if workers > 1 and not can_fork():
        warnings.warn(f"workers > 1 needs the fork start method (Linux); {what} in one process", stacklevel=stacklevel)
        workers = 1
    k = max(1, min(workers, n // max(1, min_part)))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(k)]


_INHERITED: tuple[Callable[[Any, Any], Any], Any] | None = None  # what the forked workers see


def _call(item: Any) -> Any:
    assert _INHERITED is not None
    fn, state = _INHERITED
    return fn(state, item)


def fork_map(fn: Callable[[S, Any], T], state: S, items: Sequence[Any], what: str = "worker") -> list[T]:
    """``[fn(state, item) for item in items]``, each call in its own forked process, in order.

    ``state`` (a model, a pipeline, a task) is inherited by the forked processes, not pickled; ``items``
    and the results are. A worker's exception is raised here with a note naming its item; a worker that
    dies without one (killed, out of memory) raises RuntimeError instead of waiting forever.
    """
    global _INHERITED
    if _INHERITED is not None:
        raise RuntimeError("fork_map does not nest: a worker cannot fork workers of its own")
    _INHERITED = (fn, state)
    # Move the parent's objects out of the garbage collector's sight while the workers run: a collection
    # in a worker would otherwise write to every inherited object (its GC header) and so copy the parent's
    # whole heap, page by page (slow with a large corpus or model in memory). A caller that froze objects
    # itself keeps them frozen: then nothing is frozen or thawed here.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        with ProcessPoolExecutor(len(items), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_call, item) for item in items]
            results = []
            for item, future in zip(items, futures, strict=True):
                try:
                    results.append(future.result())
                except BrokenProcessPool as exc:  # a worker ended without an answer: every part is lost
                    raise RuntimeError(
                        f"a {what} process died (killed, or out of memory?); run with workers=1 to work in this process"
                    ) from exc
                except Exception as exc:
                    exc.add_note(f"raised in the {what} process for {_describe(item)}")
                    raise
            return results
    finally:
        _INHERITED = None
        if freeze:
            gc.unfreeze()


def _describe(item: Any) -> str:
    part = item[-1] if isinstance(item, tuple) and item else item
    if isinstance(part, range):
        return f"items {part.start}..{part.stop - 1}"
    return repr(item)[:80]

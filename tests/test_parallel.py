"""workbench.parallel: one batch over forked processes, with its errors brought home."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from workbench.parallel import contiguous_parts, fork_map

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")


def test_parts_are_contiguous_cover_everything_and_respect_the_minimum():
    assert contiguous_parts(1, 4) == [range(0, 1)]
    assert contiguous_parts(4, 2) == [range(0, 2), range(2, 4)]
    assert contiguous_parts(100, 4, min_part=32) == [range(0, 33), range(33, 67), range(67, 100)]
    assert contiguous_parts(10, 4, min_part=32) == [range(0, 10)]
    for n, workers in ((7, 3), (0, 2), (5, 8)):
        parts = contiguous_parts(n, workers)
        assert [i for p in parts for i in p] == list(range(n))


def test_without_fork_there_is_one_part_and_a_warning(monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.warns(UserWarning, match="fork start method.*scoring in one process"):
        assert contiguous_parts(10, 2, what="scoring") == [range(0, 10)]


def test_workers_inherit_the_state_and_return_in_order():
    state = {"offset": 100, "parent": os.getpid()}

    def work(st, part):
        return [st["offset"] + i for i in part], os.getpid() != st["parent"]

    results = fork_map(work, state, contiguous_parts(9, 3))
    assert [r[0] for r in results] == [[100, 101, 102], [103, 104, 105], [106, 107, 108]]
    assert all(forked for _, forked in results)


def test_an_exception_in_a_worker_is_raised_with_its_part_named():
    def work(_, part):
        if part.start:
            raise KeyError(f"bad part {part.start}")
        return part.start

    with pytest.raises(KeyError, match="bad part 2") as caught:
        fork_map(work, None, contiguous_parts(4, 2), what="scoring worker")
    assert any("scoring worker process for items 2..3" in note for note in caught.value.__notes__)


def test_a_worker_that_dies_raises_instead_of_hanging():
    def work(_, part):
        if part.start:
            os._exit(3)
        return 0

    with pytest.raises(RuntimeError, match="scoring worker process died"):
        fork_map(work, None, contiguous_parts(4, 2), what="scoring worker")


def test_workers_cannot_fork_workers_of_their_own():
    def work(_, part):
        return fork_map(lambda s, p: p, None, [part])

    with pytest.raises(RuntimeError, match="does not nest"):
        fork_map(work, None, [range(0, 1)])


def test_fork_map_leaves_the_collector_as_it_found_it():
    """The parent's objects are frozen for the garbage collector only while the workers run, error or not."""
    import gc

    def work(_, part):
        if part.start:
            raise ValueError("bad part")
        return gc.get_freeze_count() > 0  # the worker sees the parent's objects frozen

    assert gc.get_freeze_count() == 0
    with pytest.raises(ValueError, match="bad part"):
        fork_map(work, None, contiguous_parts(4, 2))
    assert gc.get_freeze_count() == 0
    assert fork_map(work, None, [range(0, 2)]) == [True]
    assert gc.get_freeze_count() == 0
    gc.freeze()  # the caller's own freeze is left alone
    try:
        frozen = gc.get_freeze_count()
        assert fork_map(work, None, [range(0, 2)]) == [True]
        assert gc.get_freeze_count() == frozen > 0
    finally:
        gc.unfreeze()

"""One small interface for parallel work: cohort shards, sweeps, seeds, ensemble members.

`InProcessExecutor` runs jobs one after another (the default, and what tests use);
`ProcessExecutor` spreads them over local worker processes (spawned, so torch state is
never forked). Jobs are top-level functions with picklable arguments. `imap` yields
`(job index, result)` as jobs finish, so callers can stream results without holding them
all; `ordered` turns that into submission order with a bounded buffer.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Protocol, TypeVar

from biowm.core.errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def imap(self, function: Callable[[T], R], jobs: Iterable[T]) -> Iterator[tuple[int, R]]:
        """`(index, function(job))` for every job, in completion order."""
        ...


class InProcessExecutor:
    def imap(self, function: Callable[[T], R], jobs: Iterable[T]) -> Iterator[tuple[int, R]]:
        for index, job in enumerate(jobs):
            yield index, function(job)


class ProcessExecutor:
    """Local worker processes; each worker runs with `threads_per_worker` torch threads."""

    def __init__(self, workers: int, threads_per_worker: int = 1) -> None:
        if workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker

    def imap(self, function: Callable[[T], R], jobs: Iterable[T]) -> Iterator[tuple[int, R]]:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_set_threads,
            initargs=(self.threads_per_worker,),
        ) as pool:
            futures = {pool.submit(function, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                yield futures[future], future.result()


def ordered(results: Iterator[tuple[int, R]]) -> Iterator[R]:
    """Re-order `(index, result)` pairs into index order, yielding each as soon as possible."""
    pending: dict[int, R] = {}
    expected = 0
    for index, result in results:
        pending[index] = result
        while expected in pending:
            yield pending.pop(expected)
            expected += 1


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def make_executor(workers: int) -> Executor:
    """In-process for `workers == 1`, local worker processes otherwise."""
    return InProcessExecutor() if workers == 1 else ProcessExecutor(workers)

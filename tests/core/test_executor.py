import pytest

from biowm.core.errors import InvalidInputError
from biowm.core.executor import InProcessExecutor, ProcessExecutor, make_executor, ordered


def square(x: int) -> int:
    return x * x


def test_in_process_and_process_executors_agree():
    jobs = list(range(7))
    local = [r for _, r in sorted(InProcessExecutor().imap(square, jobs))]
    remote = list(ordered(ProcessExecutor(2).imap(square, jobs)))
    assert local == remote == [x * x for x in jobs]


def test_ordered_restores_submission_order():
    assert list(ordered(iter([(2, "c"), (0, "a"), (1, "b"), (3, "d")]))) == list("abcd")


def test_worker_count_is_validated():
    assert isinstance(make_executor(1), InProcessExecutor)
    with pytest.raises(InvalidInputError, match="workers must be >= 1"):
        make_executor(0)

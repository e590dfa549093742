import pytest
import torch

from biowm.core import accelerate


def test_compiler_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(function, dynamic=True):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = accelerate.maybe_compile(lambda x: 2 * x)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        assert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))
    assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))

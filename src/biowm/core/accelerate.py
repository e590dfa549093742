"""Optional kernel fusion with `torch.compile`, falling back to eager code if it fails.

Batched simulators spend their time in long chains of small element-wise tensor ops;
compiling the per-step function fuses them into one loop. Compilation needs a C++
compiler and takes seconds, so it is opt-in, and any failure degrades to the eager
function with a warning instead of breaking the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def maybe_compile(function: F) -> F:
    """`torch.compile(function)` that falls back to `function` on the first failure."""
    compiled = torch.compile(function, dynamic=True)
    use_eager = False

    def run(*args: Any, **kwargs: Any) -> Any:
        nonlocal use_eager
        if not use_eager:
            try:
                return compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means eager
                warnings.warn(
                    f"torch.compile failed ({type(error).__name__}); running eager", stacklevel=2
                )
                use_eager = True
        return function(*args, **kwargs)

    return run  # type: ignore[return-value]

"""Atomic file output: a result either appears whole or not at all.

Writers write to a temporary file in the destination directory and rename it into place
on success, so an interrupted or failed command never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from biowm.core.errors import InvalidInputError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail before any work if `path` cannot be created (missing dir, no permission, is a dir)."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"--out {target}: is a directory, expected a file path")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise InvalidInputError(f"--out {target}: {parent} is not a directory")
        raise InvalidInputError(f"--out {target}: directory {parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".biowm-probe-", delete=True):
            pass
    except OSError as error:
        raise InvalidInputError(f"--out {target}: cannot write there ({error.strerror})") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise InvalidInputError(f"--out {target}: file exists and is not writable")
    return target


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create directory `path` if needed and fail early if files cannot be written in it."""
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".biowm-probe-", delete=True):
            pass
    except OSError as error:
        raise InvalidInputError(f"--out {target}: cannot write there ({error.strerror})") from None
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_ready(value: object) -> object:
    """`value` with every non-finite float replaced by None, so that strict JSON parsers
    accept the file (`json.dumps` would write bare NaN / Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic | np.ndarray):
        return json_ready(value.tolist())
    return value

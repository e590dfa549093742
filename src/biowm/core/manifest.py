"""Provenance manifests written beside every dataset, model and report.

A manifest records what a file is (kind), its content hash, the configuration and seed
that produced it, package versions and the git commit, so any result can be traced and
reproduced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_write_text

MANIFEST_FORMAT_VERSION = 1
_TRACKED_PACKAGES = ("biowm", "torch", "numpy", "scipy", "pyarrow", "gymnasium")


@dataclass
class Manifest:
    """Provenance of one artefact; `content_sha256` maps file names to their hashes."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    content_sha256: dict[str, str] = field(default_factory=dict)
    package_versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    created_utc: str = ""
    python: str = ""
    format_version: int = MANIFEST_FORMAT_VERSION

    @classmethod
    def create(
        cls, kind: str, config: dict[str, Any] | None = None, seed: int | None = None
    ) -> Manifest:
        return cls(
            kind=kind,
            config=dict(config or {}),
            seed=seed,
            package_versions=package_versions(),
            git_commit=git_commit(),
            created_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            python=platform.python_version(),
        )

    def add_file(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        """Record the SHA-256 of `path` under `name` (default: the file name)."""
        self.content_sha256[name or Path(path).name] = sha256_file(path)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    def write(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"manifest is not valid JSON: {error}") from None
        if data.get("format_version") != MANIFEST_FORMAT_VERSION:
            raise InvalidInputError(
                f"manifest format_version {data.get('format_version')!r} is not supported "
                f"(this biowm reads {MANIFEST_FORMAT_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def verify(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        """Raise `InvalidInputError` if `path` no longer matches the recorded hash."""
        key = name or Path(path).name
        expected = self.content_sha256.get(key)
        if expected is None:
            raise InvalidInputError(f"manifest has no hash for {key!r}")
        actual = sha256_file(path)
        if actual != expected:
            raise InvalidInputError(
                f"{path}: content hash {actual[:12]}… does not match manifest {expected[:12]}…"
                " (file changed or corrupted)"
            )


def manifest_path_for(path: str | os.PathLike[str]) -> Path:
    """The manifest that sits beside a data file: `data.parquet` -> `data.manifest.json`."""
    p = Path(path)
    return p.with_name(p.stem + ".manifest.json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the biowm checkout, when biowm runs from one; None otherwise."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) == 40 else None

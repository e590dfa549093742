"""Versioned model directories: `config.json` + `weights.safetensors` + `manifest.json` + `card.md`.

Loading a model never executes code (no pickle): the config is JSON, the weights are
safetensors. The manifest holds SHA-256 hashes of config and weights, so a corrupted or
edited file is refused, and an unknown format version is refused with a clear message.
A directory is written to a temporary sibling and renamed into place, so a failed save
never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest

MODEL_FORMAT_VERSION = 1
CONFIG, WEIGHTS, MANIFEST, CARD = "config.json", "weights.safetensors", "manifest.json", "card.md"


def save_model_dir(
    directory: str | os.PathLike[str],
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    manifest: Manifest,
    card: str,
) -> None:
    """Write a model directory atomically (replacing an existing one only on success)."""
    target = Path(directory)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.tmp-"))
    try:
        full_config = {"format_version": MODEL_FORMAT_VERSION, **config}
        (staging / CONFIG).write_text(json.dumps(full_config, indent=2, sort_keys=True) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                  str(staging / WEIGHTS))
        manifest.add_file(staging / CONFIG)
        manifest.add_file(staging / WEIGHTS)
        manifest.write(staging / MANIFEST)
        (staging / CARD).write_text(card)
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.old-"))
            os.replace(target, retired / "model")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_model_dir(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Manifest]:
    """Read and verify a model directory; raises `InvalidInputError` on anything wrong."""
    source = Path(directory)
    if not source.is_dir():
        raise InvalidInputError(f"model directory {source} does not exist")
    for name in (CONFIG, WEIGHTS, MANIFEST):
        if not (source / name).is_file():
            raise InvalidInputError(f"model directory {source}: missing {name}")
    try:
        config = json.loads((source / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{source / CONFIG}: not valid JSON ({error})") from None
    version = config.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise InvalidInputError(
            f"{source}: model format version {version!r} is not supported by this biowm "
            f"(it reads version {MODEL_FORMAT_VERSION}); re-train or upgrade biowm"
        )
    manifest = Manifest.read(source / MANIFEST)
    manifest.verify(source / CONFIG)
    manifest.verify(source / WEIGHTS)
    try:
        tensors = load_file(str(source / WEIGHTS))
    except (SafetensorError, OSError) as error:
        raise InvalidInputError(f"{source / WEIGHTS}: corrupted weights ({error})") from None
    return config, tensors, manifest

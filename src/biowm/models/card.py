"""Model cards: what a model is for, what it was trained on, how it did, where not to use it."""

from __future__ import annotations

from typing import Any

from biowm.core.manifest import Manifest


def model_card(
    title: str,
    config: dict[str, Any],
    manifest: Manifest,
    *,
    context_of_use: str,
    validation_domain: str,
    limitations: list[str],
    metrics: dict[str, Any] | None = None,
) -> str:
    """Markdown model card generated from the config, the manifest and evaluation results."""
    data_hashes = manifest.config.get("training_data_sha256", {})
    packages = ", ".join(f"{k} {v}" for k, v in sorted(manifest.package_versions.items()))
    lines = [
        f"# Model card: {title}",
        "",
        "## Context of use",
        context_of_use,
        "",
        "## Model",
        f"- class: `{config.get('model_class')}`",
        f"- format version: {config.get('format_version', 1)}",
        f"- seed: {manifest.seed}",
        f"- biowm commit: {manifest.git_commit or 'unknown'}",
        f"- packages: {packages}",
        "",
        "## Training data",
    ]
    if data_hashes:
        lines += [f"- `{name}` sha256 `{digest}`" for name, digest in sorted(data_hashes.items())]
    else:
        lines.append("- not recorded")
    for key in ("n_train_windows", "n_val_windows", "train_subjects"):
        if key in manifest.config:
            lines.append(f"- {key}: {manifest.config[key]}")
    lines += ["", "## Validation domain", validation_domain, "", "## Metrics"]
    if metrics:
        lines += [f"- {name}: {value}" for name, value in metrics.items()]
    else:
        lines.append("- not evaluated yet (run `biowm benchmark`)")
    lines += ["", "## Limitations", *[f"- {item}" for item in limitations], ""]
    return "\n".join(lines)

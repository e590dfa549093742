"""Perturbation data sets (.h5ad, cell-eval conventions): loading, checks, normalisation, splits.

Conventions: `obs["target_gene"]` names each cell's perturbation, `"non-targeting"` marks
controls, combinations are `"A+B"`; optional obs columns hold batch/replicate, dose and
time. `X` holds raw counts. Expression for models and metrics is `normalize_total` to
10,000 counts per cell, then `log1p`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError

CONTROL = "non-targeting"
PERTURBATION_COLUMN = "target_gene"
TARGET_SUM = 10_000.0


def dense(matrix: Any) -> np.ndarray:
    """A dense float32 copy of a (possibly sparse) matrix."""
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix,
                      dtype=np.float32)


def check_counts(counts: np.ndarray, source: str) -> None:
    """Refuse data that are not raw counts (negative or non-integer values)."""
    if counts.size and (counts.min() < 0 or not np.all(counts == np.round(counts))):
        raise InvalidInputError(
            f"{source}: X must hold raw counts (non-negative integers); found values such as "
            f"{float(counts[(counts < 0) | (counts != np.round(counts))][0]):g} — pass the "
            "unnormalised UMI counts, not log-normalised expression")


def load_screen(path: str | os.PathLike[str], require_controls: bool = True) -> Any:
    """Read an .h5ad screen and check it: a `target_gene` column, control cells, raw counts."""
    import anndata

    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"{source}: no such file")
    try:
        adata = anndata.read_h5ad(source)
    except (OSError, KeyError, ValueError) as error:
        raise InvalidInputError(f"{source}: not a readable .h5ad file ({error})") from None
    if PERTURBATION_COLUMN not in adata.obs:
        raise InvalidInputError(
            f"{source}: obs has no {PERTURBATION_COLUMN!r} column naming each cell's "
            f"perturbation (found {list(adata.obs.columns)}); add it, with {CONTROL!r} for "
            "control cells")
    labels = adata.obs[PERTURBATION_COLUMN].astype(str)
    if require_controls and not (labels == CONTROL).any():
        raise InvalidInputError(f"{source}: no control cells; label them {CONTROL!r} in "
                                f"obs[{PERTURBATION_COLUMN!r}]")
    check_counts(dense(adata.X), str(source))
    return adata


def log_normalise(counts: np.ndarray, target_sum: float = TARGET_SUM) -> np.ndarray:
    """normalize_total to `target_sum` per cell, then log1p (cells with no counts stay 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(counts / np.maximum(totals, 1e-12) * target_sum).astype(np.float32)


def select_cells(adata: Any, min_guide_fraction: float | None = None,
                 min_cells: int = 1) -> Any:
    """Cells confidently assigned (`grna_frac` > threshold, when given and present), and
    perturbations with at least `min_cells` such cells (controls always kept)."""
    keep = np.ones(adata.n_obs, dtype=bool)
    if min_guide_fraction is not None and "grna_frac" in adata.obs:
        keep &= adata.obs["grna_frac"].to_numpy() > min_guide_fraction
    labels = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    names, counts = np.unique(labels[keep], return_counts=True)
    enough = set(names[counts >= min_cells]) | {CONTROL}
    keep &= np.isin(labels, list(enough))
    return adata[keep].copy()


@dataclass(frozen=True)
class Split:
    """Cells for training and for testing (boolean masks over the data's cells)."""

    train: np.ndarray
    test: np.ndarray
    description: str


def split_by_context(adata: Any, column: str, train_value: str, test_value: str) -> Split:
    """Held-out context (e.g. replicate, batch): train on one value, test on another."""
    if column not in adata.obs:
        raise InvalidInputError(f"no obs column {column!r}; columns: {list(adata.obs.columns)}")
    values = adata.obs[column].astype(str).to_numpy()
    for value in (train_value, test_value):
        if value not in values:
            raise InvalidInputError(f"obs[{column!r}] has no {value!r}; values: "
                                    f"{sorted(set(values))}")
    return Split(values == train_value, values == test_value,
                 f"train {column}={train_value}, test {column}={test_value}")


def split_held_out_perturbations(adata: Any, held_out: list[str]) -> Split:
    """Held-out perturbations: their cells are the test set; every other cell trains
    (test controls are the training controls too — they are the unperturbed reference)."""
    labels = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    unknown = sorted(set(held_out) - set(labels))
    if unknown:
        raise InvalidInputError(f"held-out perturbations {unknown} are not in the data")
    test = np.isin(labels, held_out)
    return Split(~test, test | (labels == CONTROL), f"held out {len(held_out)} perturbations")


def split_held_out_combinations(adata: Any, fraction: float, seed: int) -> Split:
    """Held-out combinations: a `fraction` of the `A+B` perturbations is tested, while all
    singles and the remaining combinations train."""
    labels = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    combos = sorted({name for name in labels if "+" in name})
    if not combos:
        raise InvalidInputError("the data hold no combinations (perturbations named A+B)")
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(combos, max(1, int(round(fraction * len(combos)))),
                             replace=False))
    return split_held_out_perturbations(adata, chosen)

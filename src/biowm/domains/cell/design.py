"""Closed-loop design of double-perturbation experiments on a simulated screen.

The loop starts from the controls and every single perturbation; each round fits the
perturbation world model, scores its predictions of *all* doubles, and the strategy (see
`biowm.plan.experiment_design`) picks which doubles to "run" next — their experiment
cells join the training data. Each double's cells are split once: half are the
experiment (revealed when it is run), half the reference its prediction is scored
against, so a run double is still scored on cells the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.domains.cell.data import PERTURBATION_COLUMN, dense, log_normalise
from biowm.models.perturbation_world import PerturbationWorldConfig, PerturbationWorldModel
from biowm.plan.experiment_design import FitRound, RoundResult

TOP_EXPRESSED = 1_000


@dataclass
class ScreenPool:
    """A simulated screen prepared for the loop (log-normalised cells and the split)."""

    expression: np.ndarray
    labels: np.ndarray
    genes: list[str]
    doubles: list[str]
    experiment: np.ndarray  # bool per cell: revealed when its double is run
    reference_means: np.ndarray  # [D, G] mean of each double's held-back cells
    scored_genes: np.ndarray  # indices of the top expressed genes


def prepare_pool(adata: Any, seed: int = 0) -> ScreenPool:
    """Split each double's cells into experiment and reference halves (seeded)."""
    labels = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    doubles = sorted({name for name in labels if name.count("+") == 1})
    if not doubles:
        raise InvalidInputError("experiment design needs a screen with double perturbations "
                                "A+B (e.g. from `biowm simulate cell --doubles 300`)")
    expression = log_normalise(dense(adata.X))
    rng = np.random.default_rng([seed, 7])
    experiment = np.zeros(labels.size, dtype=bool)
    reference_means = np.empty((len(doubles), expression.shape[1]))
    for row, name in enumerate(doubles):
        cells = rng.permutation(np.flatnonzero(labels == name))
        if cells.size < 2:
            raise InvalidInputError(f"double {name!r} has {cells.size} cell; need >= 2 to "
                                    "split into experiment and reference")
        half = cells.size // 2
        experiment[cells[:half]] = True
        reference_means[row] = expression[cells[half:]].mean(axis=0)
    scored = np.argsort(-expression.mean(axis=0))[:TOP_EXPRESSED]
    return ScreenPool(expression, labels, [str(g) for g in adata.var_names], doubles,
                      experiment, reference_means, scored)


def loop_error(model: PerturbationWorldModel, pool: ScreenPool) -> float:
    """Mean L2 over the scored genes between predicted and reference double means."""
    effects = model.gated_effects(model.double_effect_members(pool.doubles),
                                  model.double_standard_errors(pool.doubles))
    predicted = np.maximum(model.control_mean[None] + effects, 0.0)
    difference = (predicted - pool.reference_means)[:, pool.scored_genes]
    return float(np.linalg.norm(difference, axis=1).mean())


def fit_round_for(pool: ScreenPool, config: PerturbationWorldConfig) -> FitRound:
    """A round of the loop: fit on controls, singles and the doubles run so far."""
    is_double = np.isin(pool.labels, pool.doubles)
    base = ~is_double & (np.char.find(pool.labels.astype(str), "@") < 0)  # no drugs

    def fit_round(run: list[str], seed: int) -> RoundResult:
        keep = base | (pool.experiment & np.isin(pool.labels, run))
        model = PerturbationWorldModel(pool.genes, replace(config, seed=seed))
        model.fit_cells(pool.expression[keep], pool.labels[keep])

        def predict(candidates: list[str]) -> tuple[np.ndarray, np.ndarray]:
            members = model.double_effect_members(candidates)[..., pool.scored_genes]
            rows = np.array([[model.vocabulary.index(p) for p in name.split("+")]
                             for name in candidates])
            singles = model.single_effects[:, :, pool.scored_genes]
            return members, singles[:, rows[:, 0]] + singles[:, rows[:, 1]]

        return RoundResult(loop_error(model, pool), predict)

    return fit_round

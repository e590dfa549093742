"""Scoring predicted cells with Arc Institute's cell-eval, and the new-context benchmark.

`score_prediction` hands predicted and real cells (log-normalised, controls included as
"non-targeting") to `cell_eval.MetricsEvaluator` and keeps the Virtual Cell Challenge
metrics: perturbation discrimination score (PDS, `discrimination_score_l1`), differential
expression overlap (DES, `overlap_at_N`), mean absolute error (MAE, `mae`) and Pearson
delta. `overall_score` scales PDS, DES and MAE against the cell-mean baseline.

`context_benchmark` is the real-data protocol: train on one context (e.g. replicate
rep_1), predict the other context's perturbed cells from its own control cells, and score
against its real cells; the real controls stand in as the predicted controls, so no
prediction can move the reference it is scored against.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.domains.cell.data import (
    CONTROL,
    PERTURBATION_COLUMN,
    dense,
    log_normalise,
    select_cells,
    split_by_context,
)
from biowm.models.perturbation import (
    LinearGeneEmbeddingModel,
    MeanShiftModel,
    PerturbationPrediction,
    thin_to_mean,
)
from biowm.models.perturbation_world import PerturbationWorldConfig, PerturbationWorldModel

BIOWM = "biowm perturbation world model"

HEADLINE = {"pds": "discrimination_score_l1", "pearson_delta": "pearson_delta",
            "des": "overlap_at_N", "mae": "mae"}


def _anndata(expression: np.ndarray, labels: np.ndarray, genes: list[str]) -> Any:
    import anndata
    import pandas as pd

    obs = pd.DataFrame({PERTURBATION_COLUMN: np.asarray(labels).astype(str)},
                       index=[f"c{i}" for i in range(len(labels))])
    return anndata.AnnData(np.asarray(expression, dtype=np.float32), obs=obs,
                           var=pd.DataFrame(index=list(genes)))


def score_prediction(prediction: PerturbationPrediction, real_expression: np.ndarray,
                     real_labels: np.ndarray, genes: list[str]) -> dict[str, float]:
    """cell-eval's metrics (means over perturbations) of a prediction against real cells."""
    from cell_eval import MetricsEvaluator

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as outdir:
        evaluator = MetricsEvaluator(
            _anndata(prediction.expression, prediction.labels, genes),
            _anndata(real_expression, real_labels, genes),
            control_pert=CONTROL, pert_col=PERTURBATION_COLUMN, num_threads=1,
            outdir=outdir)
        _, aggregated = evaluator.compute(profile="full")
    means = aggregated.filter(aggregated["statistic"] == "mean")
    metrics = {column: float(means[column][0]) for column in means.columns
               if column != "statistic"}
    return {**{short: metrics[name] for short, name in HEADLINE.items()}, "all": metrics}


def overall_score(metrics: dict[str, float], baseline: dict[str, float]) -> float:
    """Mean of PDS and DES scaled as (m − b)/(1 − b) and MAE as 1 − m/b against the
    cell-mean baseline b, each clipped at 0."""
    parts = [max(0.0, (metrics[k] - baseline[k]) / (1.0 - baseline[k])) for k in ("pds", "des")]
    parts.append(max(0.0, 1.0 - metrics["mae"] / baseline["mae"]))
    return float(np.mean(parts))


@dataclass(frozen=True)
class ContextProtocol:
    column: str = "bio_rep"
    train: str = "rep_1"
    test: str = "rep_2"
    min_guide_fraction: float = 0.8
    min_cells: int = 30


def context_benchmark(adata: Any, protocol: ContextProtocol,
                      config: PerturbationWorldConfig | None = None) -> dict[str, Any]:
    """biowm's model beside every baseline, and real training-context cells as the
    prediction (the replicate ceiling), scored on the test context's real cells."""
    selected = select_cells(adata, protocol.min_guide_fraction)
    split = split_by_context(selected, protocol.column, protocol.train, protocol.test)
    expression = log_normalise(dense(selected.X))
    labels = selected.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    genes = [str(g) for g in selected.var_names]
    train_x, train_y = expression[split.train], labels[split.train]
    test_x, test_y = expression[split.test], labels[split.test]
    names, counts = np.unique(test_y, return_counts=True)
    train_names, train_counts = np.unique(train_y, return_counts=True)
    enough_train = set(train_names[train_counts >= protocol.min_cells])
    perturbations = [str(n) for n, c in zip(names, counts, strict=True)
                     if n != CONTROL and c >= protocol.min_cells and n in enough_train]
    keep = np.isin(test_y, [*perturbations, CONTROL])
    test_x, test_y = test_x[keep], test_y[keep]
    controls = test_x[test_y == CONTROL]
    models = {
        "cell-mean": MeanShiftModel(pooled=True),
        "mean-shift": MeanShiftModel(),
        "mean-shift |z|>2": MeanShiftModel(z_threshold=2.0),
    }
    predictions = {name: model.fit(train_x, train_y).predict(controls, perturbations)
                   for name, model in models.items()}
    world = PerturbationWorldModel(genes, config or PerturbationWorldConfig())
    world.fit_cells(train_x, train_y)
    predictions[BIOWM] = world.predict(controls, perturbations)
    in_train = np.isin(train_y, perturbations)
    predictions[f"real {protocol.train} cells"] = PerturbationPrediction(
        np.concatenate([controls, train_x[in_train]]),
        np.concatenate([np.full(controls.shape[0], CONTROL, dtype=object), train_y[in_train]]))
    scores = {name: score_prediction(p, test_x, test_y, genes) for name, p in predictions.items()}
    baseline = scores["cell-mean"]
    for metrics in scores.values():
        metrics["overall"] = overall_score(metrics, baseline)
    return {"protocol": protocol.__dict__, "perturbations": perturbations,
            "test_cells": int(keep.sum()), "models": scores}


def unseen_perturbation_benchmark(adata: Any, min_guide_fraction: float | None = 0.8,
                                  min_cells: int = 30,
                                  config: PerturbationWorldConfig | None = None,
                                  ) -> dict[str, Any]:
    """Leave one perturbation out, over targets that are measured genes: each is predicted
    from all control cells by models trained without it, and all held-out predictions are
    scored together against the real cells."""
    selected = select_cells(adata, min_guide_fraction, min_cells)
    expression = log_normalise(dense(selected.X))
    labels = selected.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    genes = [str(g) for g in selected.var_names]
    targets = sorted({name for name in labels if name != CONTROL and name in genes})
    if len(targets) < 2:
        raise InvalidInputError("leave-one-out needs at least two perturbations of measured "
                                f"genes with {min_cells} cells; found {targets}")
    controls = expression[labels == CONTROL]
    builders = {"training mean": lambda: MeanShiftModel(pooled=True),
                "linear (PCA gene embedding)": lambda: LinearGeneEmbeddingModel(genes),
                BIOWM: lambda: _FittedWorld(genes, config or PerturbationWorldConfig())}
    predictions: dict[str, list[PerturbationPrediction]] = {name: [] for name in builders}
    for target in targets:
        train = labels != target
        for name, build in builders.items():
            model = build().fit(expression[train], labels[train])
            predicted = model.predict(controls, [target])
            keep = predicted.labels == target
            predictions[name].append(PerturbationPrediction(predicted.expression[keep],
                                                            predicted.labels[keep]))
    real = np.isin(labels, [*targets, CONTROL])
    control_labels = np.full(controls.shape[0], CONTROL, dtype=object)
    scores = {}
    for name, parts in predictions.items():
        joined = PerturbationPrediction(
            np.concatenate([controls, *[p.expression for p in parts]]),
            np.concatenate([control_labels, *[p.labels for p in parts]]))
        scores[name] = score_prediction(joined, expression[real], labels[real], genes)
    return {"targets": targets, "models": scores}


class _FittedWorld(PerturbationWorldModel):
    """The world model with the baselines' `fit(expression, labels) -> self` signature."""

    def fit(self, expression: np.ndarray, labels: np.ndarray) -> _FittedWorld:  # type: ignore[override]
        self.fit_cells(expression, labels)
        return self


TOP_EXPRESSED = 1_000


def interaction_detection(predicted: dict[str, float], truth: dict[str, float],
                          threshold: float) -> dict[str, float]:
    """Precision and recall of calling a double interacting (score > `threshold`)."""
    names = sorted(truth)
    called = np.array([predicted.get(n, 0.0) > threshold for n in names])
    actual = np.array([truth[n] > threshold for n in names])
    hits = int((called & actual).sum())
    return {"precision": hits / int(called.sum()) if called.any() else float("nan"),
            "recall": hits / int(actual.sum()) if actual.any() else float("nan"),
            "interacting": int(actual.sum()), "called": int(called.sum())}


def doubles_benchmark(adata: Any, fraction: float = 0.5, seed: int = 0,
                      config: PerturbationWorldConfig | None = None) -> dict[str, Any]:
    """Held-out double perturbations of a simulated screen (ground truth in
    `uns["biowm_truth"]`): L2 between predicted and real mean log-expression over the
    top expressed genes, and genetic-interaction detection against the true scores."""
    from biowm.domains.cell.data import split_held_out_combinations

    if "biowm_truth" not in adata.uns:
        raise InvalidInputError("the doubles protocol needs a simulated screen with "
                                "uns['biowm_truth'] (from `biowm simulate cell`)")
    truth = adata.uns["biowm_truth"]
    true_scores = dict(zip([str(n) for n in truth["doubles"]],
                           np.asarray(truth["interaction_score"], dtype=float), strict=True))
    threshold = float(truth["interaction_threshold"])
    split = split_held_out_combinations(adata, fraction, seed)
    expression = log_normalise(dense(adata.X))
    labels = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy()
    held_out = sorted(set(labels[split.test]) - {CONTROL})
    top = np.argsort(-expression.mean(axis=0))[:TOP_EXPRESSED]
    controls = expression[labels == CONTROL]
    real_means = {n: expression[labels == n].mean(axis=0) for n in held_out}
    additive = MeanShiftModel().fit(expression[split.train], labels[split.train])
    models = {"additive": additive, "training mean": MeanShiftModel(pooled=True).fit(
        expression[split.train], labels[split.train])}
    world = PerturbationWorldModel([str(g) for g in adata.var_names],
                                   config or PerturbationWorldConfig())
    world.fit_cells(expression[split.train], labels[split.train])
    models[BIOWM] = world
    results: dict[str, Any] = {}
    for name, model in models.items():
        l2, scores = [], {}
        for double in held_out:
            effect = model.effect(double)
            cells = thin_to_mean(controls, effect) if model is world and world.config.count_aware \
                else np.maximum(controls + effect, 0.0)
            l2.append(float(np.linalg.norm((cells.mean(axis=0) - real_means[double])[top])))
            scores[double] = world.interaction_score(double) if model is world else float(
                np.abs(effect - additive.effect(double)).max())
        results[name] = {"l2_top_genes": float(np.mean(l2)),
                         "interactions": interaction_detection(
                             scores, {d: true_scores[d] for d in held_out}, threshold)}
    return {"held_out_doubles": held_out, "models": results}

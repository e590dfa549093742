"""Perturbation-response baselines for single-cell snapshots (no domain knowledge here).

Data are log-normalised expression `[cells, genes]` with a perturbation label per cell
(`control` marks unperturbed cells; combinations are "A+B"). A model learns from training
cells and, given control cells from a new context, returns predicted perturbed cells:
the new controls moved by the learned effect, so the new context's cell-to-cell variation
is kept. These are the baselines the independent benchmarks found hard to beat
(Ahlmann-Eltze, Huber & Anders, Nat Methods 2025).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from biowm.core.errors import InvalidInputError


@dataclass
class PerturbationPrediction:
    """Predicted log-expression `[K, G]` and the perturbation label of each row."""

    expression: np.ndarray
    labels: np.ndarray


def shift_controls(controls: np.ndarray, perturbations: list[str],
                   effect: Callable[[str], np.ndarray], control: str,
                   count_aware: bool = False) -> PerturbationPrediction:
    """Every new control cell moved by each perturbation's effect — shifted and clipped at
    0 (log1p expression is non-negative), or with `count_aware` by `thin_to_mean`; the
    controls themselves are included."""
    rows = [controls]
    labels = [np.full(controls.shape[0], control, dtype=object)]
    for name in perturbations:
        rows.append(thin_to_mean(controls, effect(name)) if count_aware
                    else np.maximum(controls + effect(name), 0.0))
        labels.append(np.full(controls.shape[0], name, dtype=object))
    return PerturbationPrediction(np.concatenate(rows).astype(np.float32),
                                  np.concatenate(labels))


def thin_to_mean(controls: np.ndarray, effect: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Count-aware decoding: control cells `[N, G]` (log1p of normalised counts) moved so
    each gene's mean log-expression changes by `effect [G]`. Decreases scale every cell's
    normalised counts by one factor per gene (binomial thinning in expectation: zeros stay
    zero, a knockout empties the gene), the factor found by bisection so the mean is hit
    exactly; increases shift log-expression (zeros can rise). Decreases larger than the
    gene's whole mean empty it."""
    counts = np.expm1(controls.astype(np.float64))
    target = controls.mean(axis=0) + effect
    low, high = np.zeros(effect.shape), np.ones(effect.shape)
    for _ in range(iterations):
        middle = (low + high) / 2
        too_high = np.log1p(counts * middle).mean(axis=0) > target
        high = np.where(too_high, middle, high)
        low = np.where(too_high, low, middle)
    scaled = np.log1p(counts * ((low + high) / 2))
    shifted = controls + np.maximum(effect, 0.0)
    return np.where(effect < 0, scaled, shifted).astype(np.float32)


def _group_means(expression: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    names, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((names.size, expression.shape[1]))
    np.add.at(sums, index, expression)
    counts = np.bincount(index, minlength=names.size)[:, None]
    return {str(name): sums[i] / counts[i] for i, name in enumerate(names)}


@dataclass
class MeanShiftModel:
    """Each perturbation's mean training effect (its mean minus the control mean), added to
    every new control cell; with `z_threshold`, only genes whose effect is larger than
    `z_threshold` standard errors move. `pooled=True` gives every perturbation the pooled
    effect of all perturbed cells (the "cell-mean" baseline: it cannot tell them apart);
    combinations never seen take the sum of their singles' effects (additive baseline)."""

    control: str = "non-targeting"
    z_threshold: float | None = None
    pooled: bool = False
    effects: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, expression: np.ndarray, labels: np.ndarray) -> MeanShiftModel:
        labels = np.asarray(labels).astype(str)
        if not (labels == self.control).any():
            raise InvalidInputError(f"training data need control cells ({self.control!r})")
        means = _group_means(expression, labels)
        control_mean = means[self.control]
        control_sd = expression[labels == self.control].std(axis=0)
        n_control = int((labels == self.control).sum())
        perturbed = labels != self.control
        pooled_effect = expression[perturbed].mean(axis=0) - control_mean if perturbed.any() \
            else np.zeros_like(control_mean)
        self.effects = {}
        for name, mean in means.items():
            if name == self.control:
                continue
            effect = pooled_effect if self.pooled else mean - control_mean
            if self.z_threshold is not None:
                n = int((labels == name).sum())
                cells = expression[labels == name]
                standard_error = np.sqrt(cells.var(axis=0) / n + control_sd**2 / n_control)
                effect = np.where(np.abs(effect) > self.z_threshold * np.maximum(
                    standard_error, 1e-9), effect, 0.0)
            self.effects[name] = effect
        self._pooled_effect = pooled_effect
        return self

    def effect(self, perturbation: str) -> np.ndarray:
        if perturbation in self.effects:
            return self.effects[perturbation]
        if self.pooled:
            return self._pooled_effect
        parts = perturbation.split("+")
        if len(parts) > 1 and all(p in self.effects for p in parts):
            return np.sum([self.effects[p] for p in parts], axis=0)
        raise InvalidInputError(f"no training cells for {perturbation!r} (nor for all parts "
                                f"of a combination); known: {sorted(self.effects)[:10]} …")

    def predict(self, controls: np.ndarray, perturbations: list[str]) -> PerturbationPrediction:
        return shift_controls(controls, perturbations, self.effect, self.control)


@dataclass
class LinearGeneEmbeddingModel:
    """The linear baseline of Ahlmann-Eltze, Huber & Anders (2025): effect matrix
    D [genes × perturbations] ≈ G W Pᵀ, with G the genes' top principal components of the
    training expression and P the perturbations' embeddings taken as their target genes'
    rows of G — so a perturbation never seen, of a measured gene, still gets a prediction.
    W is the ridge solution; `components` and `ridge` are fixed, not tuned on test data."""

    genes: list[str]
    control: str = "non-targeting"
    components: int = 10
    ridge: float = 0.1
    weights: np.ndarray | None = None
    embedding: np.ndarray | None = None

    def fit(self, expression: np.ndarray, labels: np.ndarray) -> LinearGeneEmbeddingModel:
        labels = np.asarray(labels).astype(str)
        means = _group_means(expression, labels)
        if self.control not in means:
            raise InvalidInputError(f"training data need control cells ({self.control!r})")
        centred = expression - expression.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(self.components, vt.shape[0])
        self.embedding = vt[:k].T  # [genes, k]
        index = {g: i for i, g in enumerate(self.genes)}
        usable = [n for n in means if n != self.control and n in index]
        if not usable:
            raise InvalidInputError("no training perturbation targets a measured gene")
        effects = np.stack([means[n] - means[self.control] for n in usable], axis=1)  # [G, P]
        p = self.embedding[[index[n] for n in usable]]  # [P, k]
        g = self.embedding
        left = np.linalg.solve(g.T @ g + self.ridge * np.eye(k), g.T @ effects)  # [k, P]
        self.weights = np.linalg.solve(p.T @ p + self.ridge * np.eye(k), (left @ p).T).T
        return self

    def effect(self, perturbation: str) -> np.ndarray:
        if self.weights is None or self.embedding is None:
            raise InvalidInputError("fit the model first")
        if perturbation not in self.genes:
            raise InvalidInputError(f"{perturbation!r} is not a measured gene: the linear "
                                    "model embeds a perturbation by its target gene")
        target = self.embedding[self.genes.index(perturbation)]
        return self.embedding @ self.weights @ target

    def predict(self, controls: np.ndarray, perturbations: list[str]) -> PerturbationPrediction:
        return shift_controls(controls, perturbations, self.effect, self.control)

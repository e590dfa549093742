"""Simulated perturbation screens as AnnData, in the cell-eval conventions.

A screen is: control cells (`target_gene = "non-targeting"`), single-gene perturbations
(knockouts, knockdowns, CRISPRa), double knockouts `A+B`, and optional multi-target drugs
at several doses. `X` holds raw UMI counts; `obs` has `target_gene`, `kind`, `strength`;
`uns["biowm_truth"]` holds the noise-free expression of every condition and, for each
double, its genetic-interaction score (the largest deviation of its log effect from the
sum of its singles' log effects) — the ground truth that real data never gives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path
from biowm.domains.cell.grn import (
    CellNoise,
    Network,
    Perturbation,
    drug_perturbation,
    gene_perturbation,
    random_network,
    simulate_cells,
)

CONTROL = "non-targeting"
INTERACTION_THRESHOLD = 0.5  # |log1p effect − additive| above which a double interacts
LOG_PSEUDOCOUNT = 1.0


@dataclass(frozen=True)
class ScreenDesign:
    n_genes: int = 500
    n_perturbations: int = 200
    n_doubles: int = 300
    cells_per_perturbation: int = 100
    control_cells: int = 1_000
    drugs: int = 0
    doses: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_genes < 10:
            raise InvalidInputError(f"--genes must be >= 10, got {self.n_genes}")
        if not 1 <= self.n_perturbations <= self.n_genes:
            raise InvalidInputError(f"--perturbations must be in 1..{self.n_genes} (one per "
                                    f"gene), got {self.n_perturbations}")
        if self.n_doubles < 0 or self.cells_per_perturbation < 1 or self.control_cells < 1:
            raise InvalidInputError("--doubles must be >= 0 and cell counts >= 1")
        pairs = self.n_perturbations * (self.n_perturbations - 1) // 2
        if self.n_doubles > pairs:
            raise InvalidInputError(f"--doubles {self.n_doubles} exceeds the {pairs} pairs of "
                                    f"{self.n_perturbations} perturbed genes")


def design_perturbations(network: Network, design: ScreenDesign) -> list[Perturbation]:
    """Controls, singles (regulators first: only they have downstream effects), doubles
    among the single knockouts, and drugs."""
    rng = np.random.default_rng([design.seed, 1])
    others = np.setdiff1d(np.arange(network.n_genes), network.regulators)
    order = np.concatenate([rng.permutation(network.regulators), rng.permutation(others)])
    targets = [network.gene_names[i] for i in order[: design.n_perturbations]]
    singles: list[Perturbation] = []
    for gene in targets:
        draw = rng.random()
        if draw < 0.7:
            singles.append(gene_perturbation(network, [gene], "knockout"))
        elif draw < 0.85:
            singles.append(gene_perturbation(network, [gene], "knockdown",
                                             float(rng.uniform(0.5, 0.9))))
        else:
            singles.append(gene_perturbation(network, [gene], "activation",
                                             float(rng.uniform(3.0, 10.0))))
    # Doubles are knockout pairs (all perturbed genes when knockouts are too few); half are
    # drawn among regulators, where interactions happen, half among all.
    knocked = [p.name for p in singles if p.kind == "knockout"]
    pool = knocked if len(knocked) * (len(knocked) - 1) // 2 >= design.n_doubles else targets
    regulator_names = {network.gene_names[i] for i in network.regulators}
    weight = np.array([2.0 if g in regulator_names else 1.0 for g in pool])
    first, second = np.triu_indices(len(pool), k=1)
    pair_weight = weight[first] * weight[second]
    picks = rng.choice(first.size, design.n_doubles, replace=False,
                       p=pair_weight**2 / (pair_weight**2).sum())
    doubles = [gene_perturbation(network, sorted([pool[first[i]], pool[second[i]]]), "knockout")
               for i in picks]
    drugs = []
    for d in range(design.drugs):
        hits = [network.gene_names[i] for i in rng.choice(network.regulators, 3, replace=False)]
        for dose in design.doses:
            drugs.append(drug_perturbation(network, f"DRUG{d}", hits, dose, ic50=0.5))
    control = Perturbation(CONTROL, "control", np.ones(network.n_genes))
    return [control, *singles, *doubles, *drugs]


def interaction_scores(perturbations: list[Perturbation], truth: np.ndarray
                       ) -> dict[str, float]:
    """Per double A+B: max over genes of |effect(A+B) − effect(A) − effect(B)| in
    log1p(expression) units, from the noise-free steady states."""
    log_truth = np.log(truth + LOG_PSEUDOCOUNT)
    index = {p.name: i for i, p in enumerate(perturbations)}
    effect = log_truth - log_truth[index[CONTROL]]
    scores = {}
    for p in perturbations:
        if p.kind == "double":
            a, b = p.name.split("+")
            if a in index and b in index:
                deviation = effect[index[p.name]] - effect[index[a]] - effect[index[b]]
                scores[p.name] = float(np.abs(deviation).max())
    return scores


def simulate_screen(design: ScreenDesign, noise: CellNoise | None = None) -> Any:
    """The whole screen as an `anndata.AnnData` (raw counts in `X`)."""
    import anndata
    import pandas as pd

    network = random_network(design.n_genes, design.seed)
    perturbations = design_perturbations(network, design)
    # Controls and perturbed cells in two calls so the control count can differ.
    control_counts, _, control_truth = simulate_cells(network, perturbations[:1],
                                                      design.control_cells, design.seed, noise)
    other_counts, other_labels, other_truth = simulate_cells(
        network, perturbations[1:], design.cells_per_perturbation, design.seed + 1, noise)
    counts_parts = [control_counts, other_counts]
    labels_parts = [np.zeros(design.control_cells, dtype=np.int64), other_labels + 1]
    truth = np.concatenate([control_truth, other_truth])
    labels = np.concatenate(labels_parts)
    obs = pd.DataFrame({
        "target_gene": pd.Categorical([perturbations[i].name for i in labels]),
        "kind": pd.Categorical([perturbations[i].kind for i in labels]),
        "strength": [_strength(perturbations[i]) for i in labels],
    }, index=[f"cell{i}" for i in range(labels.size)])
    adata = anndata.AnnData(X=np.concatenate(counts_parts), obs=obs,
                            var=pd.DataFrame(index=list(network.gene_names)))
    scores = interaction_scores(perturbations, truth)
    adata.uns["biowm_truth"] = {
        "conditions": np.array([p.name for p in perturbations], dtype=object),
        "expression": truth.astype(np.float32),
        "doubles": np.array(list(scores), dtype=object),
        "interaction_score": np.array(list(scores.values()), dtype=np.float32),
        "interaction_threshold": INTERACTION_THRESHOLD,
        "seed": design.seed,
    }
    return adata


def _strength(perturbation: Perturbation) -> float:
    changed = perturbation.scaling[perturbation.scaling != 1.0]
    return float(changed[0]) if changed.size else 1.0


def write_h5ad(adata: Any, path: str | os.PathLike[str]) -> None:
    """Write atomically (a failed write never leaves a partial file)."""
    target = Path(path)
    with atomic_path(target) as temporary:
        adata.write_h5ad(temporary)

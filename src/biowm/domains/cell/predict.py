"""Training the perturbation world model on a screen and predicting cells for new controls.

`train_model` reads a checked screen (raw counts) and fits `PerturbationWorldModel` on its
log-normalised cells. `predict_cells` takes raw-count control cells from any context,
aligns them to the model's genes (refusing missing genes by name), and returns an AnnData
of predicted cells — obs `target_gene`, the training genes in training order, X as
log1p(counts per 10k) — with the control cells themselves under `non-targeting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.domains.cell.data import (
    CONTROL,
    PERTURBATION_COLUMN,
    dense,
    log_normalise,
    select_cells,
)
from biowm.models.perturbation import thin_to_mean
from biowm.models.perturbation_world import PerturbationWorldConfig, PerturbationWorldModel


def train_model(adata: Any, config: PerturbationWorldConfig,
                min_guide_fraction: float | None = None) -> PerturbationWorldModel:
    """Fit the model on every (confidently assigned) cell of a screen."""
    selected = select_cells(adata, min_guide_fraction)
    genes = [str(g) for g in selected.var_names]
    model = PerturbationWorldModel(genes, config)
    model.fit_cells(log_normalise(dense(selected.X)),
                    selected.obs[PERTURBATION_COLUMN].astype(str).to_numpy())
    return model


def control_expression(adata: Any, genes: list[str], source: str) -> np.ndarray:
    """Log-normalised `non-targeting` cells of a checked screen (`load_screen`) over the
    model's genes, in the model's order; extra genes are dropped."""
    present = {str(g): i for i, g in enumerate(adata.var_names)}
    missing = [g for g in genes if g not in present]
    if missing:
        raise InvalidInputError(
            f"{source}: {len(missing)} of the model's {len(genes)} genes are missing "
            f"(e.g. {missing[:5]}); supply counts for every training gene")
    keep = adata.obs[PERTURBATION_COLUMN].astype(str).to_numpy() == CONTROL
    return log_normalise(dense(adata.X[keep][:, [present[g] for g in genes]]))


def requested_perturbations(model: PerturbationWorldModel, spec: str) -> list[str]:
    """`all` (every perturbation seen in training) or a comma list such as `A,B,A+B`."""
    if spec == "all":
        return [n for n in model.trained_labels if n != model.config.control]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise InvalidInputError("--perturbations is empty; give `all` or names like A,B,A+B")
    for name in names:
        model.effect_members(name)  # raises with the perturbable vocabulary when unknown
    return names


def predict_cells(model: PerturbationWorldModel, controls: np.ndarray,
                  perturbations: list[str], cells_per_perturbation: int,
                  seed: int) -> Any:
    """Predicted cells as AnnData: for each perturbation, `cells_per_perturbation` control
    cells drawn (with replacement only when there are fewer) and moved by its effect."""
    import anndata
    import pandas as pd

    if cells_per_perturbation < 1:
        raise InvalidInputError(f"--cells-per-perturbation must be >= 1, got "
                                f"{cells_per_perturbation}")
    rng = np.random.default_rng(seed)
    rows, labels, spread = [controls], [CONTROL] * controls.shape[0], {}
    replace = cells_per_perturbation > controls.shape[0]
    for name in perturbations:
        chosen = controls[rng.choice(controls.shape[0], cells_per_perturbation, replace=replace)]
        effect = model.effect(name)
        rows.append(thin_to_mean(chosen, effect) if model.config.count_aware
                    else np.maximum(chosen + effect, 0.0))
        labels += [name] * cells_per_perturbation
        spread[name] = model.uncertainty(name)
    obs = pd.DataFrame({PERTURBATION_COLUMN: labels},
                       index=[f"pred{i}" for i in range(len(labels))])
    adata = anndata.AnnData(np.concatenate(rows).astype(np.float32), obs=obs,
                            var=pd.DataFrame(index=model.genes))
    adata.uns["biowm_prediction"] = {
        "expression": "log1p(counts per 10,000)", "seed": seed,
        "perturbations": list(perturbations),
        "effect_uncertainty_rms_sd": [spread[n] for n in perturbations]}
    return adata

"""Loading, checking, normalising and splitting perturbation screens."""

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from biowm.core.errors import InvalidInputError
from biowm.domains.cell.data import (
    CONTROL,
    load_screen,
    log_normalise,
    select_cells,
    split_by_context,
    split_held_out_combinations,
    split_held_out_perturbations,
)
from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad

REAL = Path(__file__).resolve().parents[3].parent / "shared/data/papalexi2021_thp1_reps12.h5ad"


@pytest.fixture(scope="module")
def screen():
    return simulate_screen(ScreenDesign(n_genes=40, n_perturbations=10, n_doubles=6,
                                        cells_per_perturbation=8, control_cells=30))


def write(adata, path):
    write_h5ad(adata, path)
    return path


def test_load_screen_reads_a_simulated_screen(screen, tmp_path):
    adata = load_screen(write(screen, tmp_path / "s.h5ad"))
    assert adata.n_obs == screen.n_obs and (adata.obs["target_gene"] == CONTROL).sum() == 30


def test_load_screen_refuses_what_it_cannot_use(screen, tmp_path):
    no_column = screen.copy()
    del no_column.obs["target_gene"]
    with pytest.raises(InvalidInputError, match="no 'target_gene' column"):
        load_screen(write(no_column, tmp_path / "a.h5ad"))
    no_controls = screen[screen.obs["target_gene"] != CONTROL].copy()
    with pytest.raises(InvalidInputError, match="no control cells"):
        load_screen(write(no_controls, tmp_path / "b.h5ad"))
    normalised = screen.copy()
    normalised.X = log_normalise(np.asarray(screen.X))
    with pytest.raises(InvalidInputError, match="raw counts"):
        load_screen(write(normalised, tmp_path / "c.h5ad"))
    with pytest.raises(InvalidInputError, match="no such file"):
        load_screen(tmp_path / "missing.h5ad")
    (tmp_path / "junk.h5ad").write_text("not hdf5")
    with pytest.raises(InvalidInputError, match="not a readable"):
        load_screen(tmp_path / "junk.h5ad")


def test_log_normalise_matches_normalize_total_and_log1p():
    counts = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 10.0]])
    out = log_normalise(counts)
    np.testing.assert_allclose(np.expm1(out[0]), [2500.0, 7500.0, 0.0], rtol=1e-5)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_allclose(np.expm1(out[2]).sum(), 10_000.0, rtol=1e-5)


def test_select_cells_filters_guides_and_small_perturbations():
    obs = pd.DataFrame({"target_gene": ["non-targeting"] * 3 + ["A"] * 3 + ["B"] * 2,
                        "grna_frac": [0.9, 0.5, 0.95, 0.9, 0.85, 0.3, 0.99, 0.99]},
                       index=[f"c{i}" for i in range(8)])
    adata = anndata.AnnData(np.ones((8, 2), dtype=np.float32), obs=obs)
    kept = select_cells(adata, min_guide_fraction=0.8, min_cells=2)
    assert kept.obs["target_gene"].tolist() == ["non-targeting"] * 2 + ["A"] * 2 + ["B"] * 2
    assert select_cells(adata, 0.8, min_cells=3).obs["target_gene"].tolist() == [
        "non-targeting"] * 2


def test_splits(screen):
    labels = screen.obs["target_gene"].astype(str).to_numpy()
    single = next(name for name in labels if name != CONTROL and "+" not in name)
    split = split_held_out_perturbations(screen, [single])
    assert not split.train[labels == single].any() and split.test[labels == single].all()
    assert split.test[labels == CONTROL].all()
    combos = split_held_out_combinations(screen, 0.5, seed=0)
    tested = set(labels[combos.test]) - {CONTROL}
    assert tested and all("+" in name for name in tested)
    assert not (combos.train & combos.test & (labels != CONTROL)).any()
    with pytest.raises(InvalidInputError, match="not in the data"):
        split_held_out_perturbations(screen, ["NOPE"])
    with pytest.raises(InvalidInputError, match="no obs column"):
        split_by_context(screen, "bio_rep", "rep_1", "rep_2")


@pytest.mark.skipif(not REAL.is_file(), reason="../shared/data (Papalexi 2021) is absent")
def test_real_screen_loads_and_splits_by_replicate():
    adata = select_cells(load_screen(REAL), min_guide_fraction=0.8, min_cells=30)
    split = split_by_context(adata, "bio_rep", "rep_1", "rep_2")
    assert split.train.sum() > 5_000 and split.test.sum() > 3_000
    assert not (split.train & split.test).any()
    assert adata.n_vars == 299

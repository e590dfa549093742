"""Mean-shift, cell-mean and additive perturbation baselines."""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.models.perturbation import MeanShiftModel


def data():
    rng = np.random.default_rng(0)
    genes = 5
    effect = {"A": np.array([1.0, 0, 0, 0, 0]), "B": np.array([0, -0.5, 0, 0, 0.01])}
    rows, labels = [], []
    for name, shift in [("non-targeting", np.zeros(genes)), *effect.items()]:
        rows.append(2.0 + shift + 0.1 * rng.standard_normal((200, genes)))
        labels += [name] * 200
    return np.concatenate(rows), np.array(labels), effect


def test_mean_shift_recovers_effects_and_moves_every_new_control():
    x, y, effect = data()
    model = MeanShiftModel().fit(x, y)
    for name, shift in effect.items():
        np.testing.assert_allclose(model.effect(name), shift, atol=0.05)
    controls = np.full((3, 5), 1.0)
    prediction = model.predict(controls, ["A", "B"])
    assert prediction.labels.tolist() == ["non-targeting"] * 3 + ["A"] * 3 + ["B"] * 3
    np.testing.assert_allclose(prediction.expression[:3], controls)
    np.testing.assert_allclose(prediction.expression[3:6, 0], 1.0 + model.effect("A")[0],
                               rtol=1e-6)


def test_threshold_keeps_only_significant_genes_and_additive_combinations():
    x, y, _ = data()
    model = MeanShiftModel(z_threshold=2.0).fit(x, y)
    assert model.effect("A")[0] != 0.0 and np.all(model.effect("A")[1:4] == 0.0)
    np.testing.assert_allclose(model.effect("A+B"), model.effect("A") + model.effect("B"))
    with pytest.raises(InvalidInputError, match="no training cells"):
        model.effect("C")


def test_pooled_cell_mean_gives_every_perturbation_the_same_effect_and_clips_at_zero():
    x, y, _ = data()
    model = MeanShiftModel(pooled=True).fit(x, y)
    np.testing.assert_allclose(model.effect("A"), model.effect("unseen"))
    prediction = MeanShiftModel().fit(x, y).predict(np.zeros((2, 5)), ["B"])
    assert prediction.expression.min() >= 0.0


def test_training_needs_controls():
    x, y, _ = data()
    with pytest.raises(InvalidInputError, match="control cells"):
        MeanShiftModel().fit(x[y != "non-targeting"], y[y != "non-targeting"])


def test_linear_gene_embedding_model_predicts_unseen_measured_genes():
    from biowm.models.perturbation import LinearGeneEmbeddingModel

    rng = np.random.default_rng(1)
    genes = [f"g{i}" for i in range(6)]
    rows, labels = [], []
    for name in ["non-targeting", "g0", "g1", "g2"]:
        shift = np.zeros(6)
        if name != "non-targeting":
            shift[int(name[1])] = -1.0  # a knockout lowers its own gene
        rows.append(2.0 + shift + 0.05 * rng.standard_normal((100, 6)))
        labels += [name] * 100
    model = LinearGeneEmbeddingModel(genes, components=6, ridge=1e-3).fit(
        np.concatenate(rows), np.array(labels))
    assert model.effect("g1")[1] < -0.5
    assert model.effect("g4").shape == (6,)
    with pytest.raises(InvalidInputError, match="not a measured gene"):
        model.effect("STAT1")

"""biowm's perturbation world model: effects, interactions, decoding, protocol, files."""

import numpy as np
import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import WorldModel
from biowm.models.perturbation import MeanShiftModel, thin_to_mean
from biowm.models.perturbation_world import PerturbationWorldConfig, PerturbationWorldModel

GENES = [f"g{i}" for i in range(12)]
FAST = dict(members=3, interaction_steps=300)


def _screen(seed: int = 0, interacting: bool = True):
    """Gaussian log-expression cells: singles shift their own target gene down by 1 and
    the next gene up by 0.5; doubles add, except that when `interacting` each double
    also lifts gene 11 by 1.5 (an interaction the singles cannot predict)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(1.0, 3.0, len(GENES))
    effects = {"non-targeting": np.zeros(len(GENES))}
    for i in range(6):
        effect = np.zeros(len(GENES))
        effect[i], effect[i + 1] = -1.0, 0.5
        effects[GENES[i]] = effect
    pairs = [(a, b) for a in range(6) for b in range(a + 1, 6)]
    for a, b in pairs:
        effect = effects[GENES[a]] + effects[GENES[b]]
        if interacting:
            effect = effect + np.eye(len(GENES))[11] * 1.5
        effects[f"{GENES[a]}+{GENES[b]}"] = effect
    labels = np.repeat(list(effects), 40)
    expression = base + np.stack([effects[n] for n in labels]) + rng.normal(
        0, 0.3, (len(labels), len(GENES)))
    return np.maximum(expression, 0).astype(np.float32), labels, effects


def test_point_effects_of_measured_singles_are_their_mean_shifts():
    expression, labels, _ = _screen()
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(gate_z=0.0, **FAST))
    model.fit_cells(expression, labels)
    baseline = MeanShiftModel().fit(expression, labels)
    for name in ("g0", "g3"):
        np.testing.assert_allclose(model.effect(name), baseline.effect(name), atol=1e-5)
    assert model.effect_members("g0").shape == (3, len(GENES))
    assert model.uncertainty("g0") > 0.0


def test_gate_keeps_only_effects_beyond_their_uncertainty():
    expression, labels, _ = _screen()
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(gate_z=2.0, **FAST))
    model.fit_cells(expression, labels)
    effect = model.effect("g2")
    assert effect[2] < -0.8 and effect[3] > 0.3
    assert np.count_nonzero(effect) <= 7  # most of the 10 unaffected genes stay put


def test_combination_operator_learns_an_interaction_the_additive_model_misses():
    expression, labels, effects = _screen()
    held_out = ["g0+g5", "g1+g4", "g2+g3"]
    train = ~np.isin(labels, held_out)
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(gate_z=0.0, members=2,
                                                                  interaction_steps=1500))
    model.fit_cells(expression[train], labels[train])
    additive = MeanShiftModel().fit(expression[train], labels[train])
    for name in held_out:
        model_error = np.abs(model.effect(name) - effects[name]).max()
        additive_error = np.abs(additive.effect(name) - effects[name]).max()
        assert model_error < 0.5 * additive_error, (name, model_error, additive_error)
        assert model.interaction_score(name) > 0.9


def test_no_interaction_is_invented_when_doubles_add():
    expression, labels, effects = _screen(interacting=False)
    train = labels != "g1+g4"
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(gate_z=0.0, members=2,
                                                                  interaction_steps=1500))
    model.fit_cells(expression[train], labels[train])
    assert model.interaction_score("g1+g4") < 0.3
    assert np.abs(model.effect("g1+g4") - effects["g1+g4"]).max() < 0.3


def test_unseen_perturbation_of_a_measured_gene_gets_an_effect_and_unknown_is_refused():
    expression, labels, _ = _screen()
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(gate_z=0.0, **FAST))
    model.fit_cells(expression, labels)
    assert model.effect_members("g9").shape == (3, len(GENES))  # never perturbed
    with pytest.raises(InvalidInputError, match="neither perturbed in training"):
        model.effect("KRAS")
    with pytest.raises(InvalidInputError, match="12 genes"):
        model.predict(expression[:, :5], ["g0"])


def test_thin_to_mean_hits_the_mean_keeps_zeros_and_empties_knockouts():
    rng = np.random.default_rng(1)
    controls = np.log1p(rng.poisson(2.0, (500, 3)).astype(np.float32))
    effect = np.array([-0.3, 0.4, -5.0])
    moved = thin_to_mean(controls, effect)
    assert moved[:, 0].mean() == pytest.approx(controls[:, 0].mean() - 0.3, abs=1e-4)
    assert np.all(moved[controls[:, 0] == 0, 0] == 0)
    np.testing.assert_allclose(moved[:, 1], controls[:, 1] + 0.4, atol=1e-6)
    assert np.all(moved[:, 2] < 1e-6)


def test_world_model_protocol_fit_encode_imagine_and_files(tmp_path):
    expression, labels, _ = _screen()
    model = PerturbationWorldModel(GENES, PerturbationWorldConfig(**FAST))
    model.fit_cells(expression, labels)
    assert isinstance(model, WorldModel)
    vocabulary = model.vocabulary
    hot = np.zeros((len(labels), len(vocabulary)), dtype=np.float32)
    for row, name in enumerate(labels):
        for part in name.split("+"):
            if part != "non-targeting":
                hot[row, vocabulary.index(part)] = 1.0
    data = Trajectories(
        times=torch.zeros(len(labels), 1), obs=torch.from_numpy(expression)[:, None],
        actions=torch.from_numpy(hot)[:, None], mask=torch.ones(len(labels), 1, len(GENES),
                                                                 dtype=torch.bool),
        static=torch.zeros(len(labels), 0), subject_ids=[f"c{i}" for i in range(len(labels))],
        obs_space=model.obs_space, action_space=model.action_space, static_space=Space(()))
    again = PerturbationWorldModel(GENES, PerturbationWorldConfig(**FAST))
    again.fit(data)
    np.testing.assert_allclose(again.effect("g1+g2"), model.effect("g1+g2"), atol=1e-5)
    belief = model.encode(Trajectories(
        times=torch.zeros(4, 1), obs=torch.from_numpy(expression[:4])[:, None],
        actions=torch.zeros(4, 1, len(vocabulary)), mask=torch.ones(4, 1, len(GENES),
                                                                    dtype=torch.bool),
        static=torch.zeros(4, 0), subject_ids=list("abcd"), obs_space=model.obs_space,
        action_space=model.action_space, static_space=Space(())))
    actions = torch.zeros(4, 1, len(vocabulary))
    actions[0, 0, vocabulary.index("g0")] = 1.0
    actions[1, 0, [vocabulary.index("g0"), vocabulary.index("g4")]] = 1.0
    forecast = model.imagine(belief, actions)
    assert forecast.samples.shape == (3, 4, 1, len(GENES))
    assert model.labels_from_actions(actions[:, 0]) == ["g0", "g0+g4", "non-targeting",
                                                        "non-targeting"]
    model.save(tmp_path / "model")
    loaded = PerturbationWorldModel.load(tmp_path / "model")
    for name in ("g0", "g1+g2", "g9"):
        np.testing.assert_allclose(loaded.effect(name), model.effect(name))
    assert (tmp_path / "model" / "card.md").read_text().startswith("# Model card")

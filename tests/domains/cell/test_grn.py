"""The gene-regulatory-network data engine: steady states, perturbations, ground truth."""

import numpy as np
import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.domains.cell.grn import (
    CellNoise,
    GeneNetworkSimulator,
    Perturbation,
    drug_perturbation,
    gene_perturbation,
    production,
    random_network,
    simulate_cells,
    steady_state,
)
from biowm.domains.cell.screen import CONTROL, interaction_scores


@pytest.fixture(scope="module")
def network():
    return random_network(80, seed=3)


def control(network):
    return Perturbation(CONTROL, "control", np.ones(network.n_genes))


def test_steady_state_is_a_fixed_point(network):
    scaling = np.ones((2, network.n_genes))
    scaling[1, network.regulators[0]] = 0.0
    state = steady_state(network, scaling)
    rate = production(network, state, scaling)
    np.testing.assert_allclose(rate / network.decay, state, rtol=1e-5, atol=1e-6)


def test_a_regulator_knockout_moves_its_targets_and_a_leaf_knockout_only_itself(network):
    regulator = int(network.regulators[0])
    leaf = int(np.setdiff1d(np.arange(network.n_genes), network.regulators)[0])
    names = network.gene_names
    perturbations = [control(network), gene_perturbation(network, [names[regulator]], "knockout"),
                     gene_perturbation(network, [names[leaf]], "knockout")]
    truth = steady_state(network, np.stack([p.scaling for p in perturbations]))
    change = np.abs(np.log1p(truth[1:]) - np.log1p(truth[0]))
    targets = (network.activation[:, regulator] + network.repression[:, regulator]) > 0
    assert change[0, targets].max() > 0.05
    assert truth[1, regulator] < 0.01 * truth[0, regulator]
    others = np.ones(network.n_genes, dtype=bool)
    others[leaf] = False
    assert change[1, others].max() < 1e-6


def test_doubles_of_independent_genes_are_additive_and_shared_targets_can_interact(network):
    leaves = np.setdiff1d(np.arange(network.n_genes), network.regulators)[:2]
    a, b = (network.gene_names[i] for i in leaves)
    regulators = [network.gene_names[i] for i in network.regulators]
    perturbations = [control(network), gene_perturbation(network, [a], "knockout"),
                     gene_perturbation(network, [b], "knockout"),
                     gene_perturbation(network, [a, b], "knockout")]
    for first in range(len(regulators)):
        for second in range(first + 1, len(regulators)):
            pair = [regulators[first], regulators[second]]
            perturbations += [gene_perturbation(network, [g], "knockout") for g in pair]
            perturbations.append(gene_perturbation(network, pair, "knockout"))
    truth = steady_state(network, np.stack([p.scaling for p in perturbations]))
    scores = interaction_scores(perturbations, truth)
    assert scores[f"{a}+{b}"] < 1e-6
    assert max(scores.values()) > 0.5


def test_knockdown_activation_and_drug_dose_response(network):
    gene = network.gene_names[int(network.regulators[1])]
    index = network.gene_names.index(gene)
    down = gene_perturbation(network, [gene], "knockdown", 0.7)
    up = gene_perturbation(network, [gene], "activation", 5.0)
    assert down.scaling[index] == pytest.approx(0.3) and up.scaling[index] == 5.0
    doses = [0.0, 0.1, 1.0, 10.0]
    drugs = [drug_perturbation(network, "D", [gene], dose, ic50=1.0) for dose in doses]
    level = steady_state(network, np.stack([d.scaling for d in drugs]))[:, index]
    assert np.all(np.diff(level) < 0)
    with pytest.raises(InvalidInputError, match="unknown genes"):
        gene_perturbation(network, ["NOPE"], "knockout")
    with pytest.raises(InvalidInputError, match="efficiency"):
        gene_perturbation(network, [gene], "knockdown", 1.5)


def test_cells_are_counts_reproducible_and_follow_the_truth(network):
    perturbations = [control(network)]
    counts, labels, truth = simulate_cells(network, perturbations, 400, seed=1)
    again, _, _ = simulate_cells(network, perturbations, 400, seed=1)
    np.testing.assert_array_equal(counts, again)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    assert labels.tolist() == [0] * 400
    share = counts.sum(axis=0) / counts.sum()
    expected = truth[0] / truth[0].sum()
    # Noise and nonlinear regulation shift means (Jensen), but the profile must match.
    high = expected > 0.002
    assert np.corrcoef(np.log(share[high]), np.log(expected[high]))[0, 1] > 0.95


def test_gene_network_simulator_protocol(network):
    simulator = GeneNetworkSimulator(network, CellNoise())
    state = simulator.reset(n=5, seed=0)
    action = torch.ones(5, network.n_genes)
    action[:, int(network.regulators[0])] = 0.0
    later = simulator.step(state, action, dt=3.0)
    observed = simulator.observe(later)
    assert observed.shape == (5, network.n_genes) and float(observed.min()) >= 0.0
    assert float(later["expression"][:, int(network.regulators[0])].max()) < float(
        state["expression"][:, int(network.regulators[0])].min())
    with pytest.raises(InvalidInputError):
        simulator.step(state, -torch.ones(5, network.n_genes))

"""Tabular world models: log flattening, the Dirichlet posterior, the neural table, save/load,
and the `WorldModel` verbs (encode / imagine)."""

import numpy as np
import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief
from biowm.domains.sepsis.mdp import (
    N_ACTIONS,
    N_STATES,
    SURVIVAL,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
)
from biowm.domains.sepsis.simulator import ACTION_SPACE, OBS_SPACE, simulate_episodes
from biowm.models import load_world_model
from biowm.models.tabular import (
    CONCENTRATION_GRID,
    DirichletTabularModel,
    Transitions,
    choose_concentration,
    count_transitions,
    log_predictive,
    pooled_prior_mean,
    posterior_mean,
    transitions_from_trajectories,
)
from biowm.models.tabular_mdp import q_standard_deviation, state_values
from biowm.models.tabular_neural import NeuralTabularModel

TERMINAL = list(TERMINAL_STATES)
NAN = float("nan")


def episodes(states: list[list[float]], actions: list[list[float]]) -> Trajectories:
    """Hand-written logs in the sepsis layout (one state and one action channel)."""
    b, t = len(states), max(len(s) for s in states)
    times = torch.full((b, t), NAN, dtype=torch.float64)
    obs = torch.zeros(b, t, 1)
    acts = torch.zeros(b, t, 1)
    mask = torch.zeros(b, t, 1, dtype=torch.bool)
    for i, (s, a) in enumerate(zip(states, actions, strict=True)):
        times[i, : len(s)] = torch.arange(len(s), dtype=torch.float64)
        obs[i, : len(s), 0] = torch.tensor(s)
        acts[i, : len(a), 0] = torch.tensor(a)
        mask[i, : len(s)] = True
    return Trajectories(times, obs, acts, mask, torch.zeros(b, 0),
                        [f"e{i}" for i in range(b)], OBS_SPACE, ACTION_SPACE, time_unit="step")


@pytest.fixture(scope="module")
def tables():
    return load_tables()


def clinician_transitions(n: int, seed: int, offset: int = 0) -> Transitions:
    logs = simulate_episodes(load_tables().clinician_policy, n, seed, offset=offset)
    return transitions_from_trajectories(logs, N_STATES, N_ACTIONS)


@pytest.fixture(scope="module")
def train_and_heldout():
    return clinician_transitions(300, 0), clinician_transitions(150, 0, offset=1_000_000)


# -- logs -> transitions ------------------------------------------------------------------


def test_transitions_flatten_episodes_of_different_lengths():
    logs = episodes([[0, 1, SURVIVAL], [2, 713]], [[3, 4, 0], [5, 0]])
    tr = transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    np.testing.assert_array_equal(tr.state, [0, 1, 2])
    np.testing.assert_array_equal(tr.action, [3, 4, 5])
    np.testing.assert_array_equal(tr.next_state, [1, SURVIVAL, 713])
    np.testing.assert_array_equal(tr.episode, [0, 0, 1])
    np.testing.assert_array_equal(tr.first_states, [0, 2])
    assert len(tr) == 3


def test_select_episodes_renumbers_the_kept_episodes():
    logs = episodes([[0, 1, 714], [2, 713], [3, 4, 5, 714]], [[1, 2, 0], [3, 0], [4, 5, 6, 0]])
    tr = transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    kept = tr.select_episodes(np.array([False, True, True]))
    np.testing.assert_array_equal(kept.episode, [0, 1, 1, 1])
    np.testing.assert_array_equal(kept.state, [2, 3, 4, 5])
    np.testing.assert_array_equal(kept.first_states, [2, 3])


@pytest.mark.parametrize(
    ("states", "actions", "words"),
    [
        ([[0, 716]], [[1, 0]], r"^state .*716.* at \(0, 1\).*integers 0\.\.715"),
        ([[-1, 714]], [[1, 0]], r"^state .*-1.* at \(0, 0\)"),
        ([[0.5, 714]], [[1, 0]], r"^state .*0\.5.* at \(0, 0\)"),
        ([[0, 1, 714]], [[25, 1, 0]], r"^action .*25.* at \(0, 0\).*integers 0\.\.24"),
        ([[0, 1, 714]], [[2.5, 1, 0]], r"^action .*2\.5.* at \(0, 0\)"),
        ([[0, 1, 714]], [[NAN, 1, 0]], r"^action .*nan.* at \(0, 0\)"),
    ],
)
def test_transitions_refuse_invalid_state_and_action_indices(states, actions, words):
    with pytest.raises(InvalidInputError, match=words):
        transitions_from_trajectories(episodes(states, actions), N_STATES, N_ACTIONS)


def test_transitions_refuse_missing_states_and_unknown_channels():
    logs = episodes([[0, 1, 714]], [[1, 1, 0]])
    logs.mask[0, 1, 0] = False
    with pytest.raises(InvalidInputError, match="missing values"):
        transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    with pytest.raises(InvalidInputError, match="no observation channel 'patient'"):
        transitions_from_trajectories(episodes([[0, 714]], [[1, 0]]), N_STATES, N_ACTIONS,
                                      state_channel="patient")


def test_the_final_rows_action_is_ignored_for_the_longest_episode():
    logs = episodes([[0, 1, 714], [2, 713]], [[3, 4, 99], [5, 0]])
    tr = transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    np.testing.assert_array_equal(tr.action, [3, 4, 5])


def test_the_final_rows_action_is_ignored_for_shorter_episodes_too():
    logs = episodes([[0, 1, 714], [2, 713]], [[3, 4, 0], [5, NAN]])
    tr = transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    np.testing.assert_array_equal(tr.action, [3, 4, 5])


# -- Dirichlet posterior pieces -----------------------------------------------------------


def test_counts_prior_and_posterior_mean(train_and_heldout):
    train, _ = train_and_heldout
    counts = count_transitions(train, N_STATES, N_ACTIONS)
    assert counts.sum() == len(train)
    assert counts[train.state[0], train.action[0], train.next_state[0]] >= 1
    prior = pooled_prior_mean(counts)
    assert prior.shape == (N_STATES, N_STATES)
    assert np.all(prior > 0)
    np.testing.assert_allclose(prior.sum(axis=1), 1.0)
    for alpha in (0.1, 10.0, 1000.0):
        mean = posterior_mean(counts, prior, alpha)
        np.testing.assert_allclose(mean.sum(axis=2), 1.0)
    # Little prior: the observed frequencies; no data: the prior.
    seen = counts.sum(axis=2) > 0
    s, a = np.argwhere(seen)[0]
    np.testing.assert_allclose(posterior_mean(counts, prior, 1e-9)[s, a],
                               counts[s, a] / counts[s, a].sum(), atol=1e-8)
    s, a = np.argwhere(~seen)[0]
    np.testing.assert_allclose(posterior_mean(counts, prior, 5.0)[s, a], prior[s])


def test_choose_concentration_picks_the_grid_value_with_best_heldout_likelihood(
        train_and_heldout):
    train, heldout = train_and_heldout
    alpha, scores = choose_concentration(train, heldout, N_STATES, N_ACTIONS)
    assert alpha in CONCENTRATION_GRID
    assert set(scores) == set(CONCENTRATION_GRID)
    assert all(np.isfinite(v) and v < 0 for v in scores.values())
    assert scores[alpha] == max(scores.values())
    counts = count_transitions(train, N_STATES, N_ACTIONS)
    assert scores[alpha] == pytest.approx(
        log_predictive(counts, pooled_prior_mean(counts), alpha, heldout))
    # A custom grid is honoured.
    small, small_scores = choose_concentration(train, heldout, N_STATES, N_ACTIONS,
                                               grid=(2.0, 4.0))
    assert small in (2.0, 4.0) and set(small_scores) == {2.0, 4.0}


def test_fit_chooses_the_concentration_on_heldout_logs():
    logs = simulate_episodes(load_tables().clinician_policy, 120, seed=2)
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry())
    report = model.fit(logs.select(range(100)), logs.select(range(100, 120)))
    assert model.concentration in CONCENTRATION_GRID
    assert np.isfinite(report.best_val_loss)
    assert report.best_val_loss == pytest.approx(
        -model.heldout_log_likelihood[model.concentration])


def test_fit_refuses_missing_heldout_when_concentration_is_open(train_and_heldout):
    train, _ = train_and_heldout
    logs = simulate_episodes(load_tables().clinician_policy, 20, seed=3)
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry())
    with pytest.raises(InvalidInputError, match="held-out"):
        model.fit(logs)
    with pytest.raises(InvalidInputError, match="held-out"):
        model.fit_transitions(train)
    with pytest.raises(InvalidInputError, match="unknown options"):
        model.fit(logs, logs, max_epochs=3)
    with pytest.raises(InvalidInputError, match="no transitions"):
        model.fit_transitions(train.select_episodes(np.zeros(300, dtype=bool)))
    # A fixed concentration needs no held-out data.
    fixed = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                  concentration=10.0)
    fixed.fit(logs)
    assert fixed.concentration == 10.0


def test_the_learned_mdp_is_a_proper_mdp(train_and_heldout):
    train, heldout = train_and_heldout
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry())
    model.fit_transitions(train, heldout)
    mdp = model.mdp()
    np.testing.assert_allclose(mdp.transitions.sum(axis=2), 1.0)
    for state in TERMINAL:
        assert np.all(mdp.transitions[state, :, state] == 1.0)
    np.testing.assert_allclose(mdp.initial.sum(), 1.0)
    assert np.all(mdp.initial[TERMINAL] == 0.0)
    assert mdp.initial[np.bincount(train.first_states).argmax()] == mdp.initial.max()
    np.testing.assert_array_equal(model.visit_counts(),
                                  count_transitions(train, N_STATES, N_ACTIONS).sum(axis=2))
    np.testing.assert_allclose(model.posterior_concentration(),
                               model.visit_counts() + model.concentration)


def visit_weights(tables) -> np.ndarray:
    """Expected visits of each (s, a) per episode under the clinicians' policy (exact)."""
    mdp = tables.mdp()
    live = ~mdp.terminal
    step = np.einsum("sa,sat->st", tables.clinician_policy, tables.transitions)
    occupancy = np.zeros(N_STATES)
    occupancy[live] = np.linalg.solve(np.eye(int(live.sum())) - step[np.ix_(live, live)].T,
                                      tables.initial[live])
    return occupancy[:, None] * tables.clinician_policy


def test_posterior_concentrates_on_the_true_tables_as_data_grow(tables):
    weights = visit_weights(tables)
    heldout = clinician_transitions(300, 5, offset=1_000_000)
    errors, spreads, confidence = [], [], []
    for n in (300, 3_000, 10_000):
        train = clinician_transitions(n, 5)
        chosen = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry())
        chosen.fit_transitions(train, heldout)
        l1 = np.abs(chosen.transition_mean() - tables.transitions).sum(axis=2)
        errors.append(float((weights * l1).sum() / weights.sum()))
        # With the prior strength held fixed, the Q posterior sd must shrink with data.
        fixed = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                      concentration=10.0)
        fixed.fit_transitions(train)
        mdp = fixed.mdp()
        values = state_values(mdp, tables.clinician_policy)
        sd = q_standard_deviation(mdp, values, fixed.posterior_concentration())
        spreads.append(float((weights * sd).sum() / weights.sum()))
        confidence.append(float((weights * fixed.posterior_concentration()).sum()
                                / weights.sum()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.8 * errors[0]
    assert spreads[0] > spreads[1] > spreads[2]
    assert spreads[2] < 0.75 * spreads[0]
    assert confidence[0] < confidence[1] < confidence[2]


def test_posterior_draws_average_to_the_posterior_mean():
    # A 4-state toy (states 2, 3 terminal) where thousands of whole-table draws are cheap.
    tr = Transitions(state=np.array([0, 0, 0, 1, 1]), action=np.array([0, 0, 1, 0, 0]),
                     next_state=np.array([1, 2, 3, 2, 3]), episode=np.array([0, 0, 1, 2, 2]),
                     first_states=np.array([0, 0, 1]))
    model = DirichletTabularModel(4, 2, [2, 3], np.array([0.0, 0.0, 1.0, 0.0]),
                                  concentration=3.0)
    model.fit_transitions(tr)
    rng = np.random.default_rng(0)
    draws = np.stack([model.sample_transitions(rng) for _ in range(4000)])
    np.testing.assert_allclose(draws.sum(axis=3), 1.0)
    assert np.all(draws[:, 2, :, 2] == 1.0) and np.all(draws[:, 3, :, 3] == 1.0)
    np.testing.assert_allclose(draws.mean(axis=0), model.transition_mean(), atol=0.02)
    again = model.sample_transitions(np.random.default_rng(7))
    np.testing.assert_array_equal(again, model.sample_transitions(np.random.default_rng(7)))


# -- save / load and the WorldModel verbs --------------------------------------------------


def test_dirichlet_model_round_trips_through_load_world_model(tmp_path, train_and_heldout):
    train, heldout = train_and_heldout
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(), seed=4)
    model.fit_transitions(train, heldout)
    model.save(tmp_path / "dirichlet")
    loaded = load_world_model(tmp_path / "dirichlet")
    assert isinstance(loaded, DirichletTabularModel)
    np.testing.assert_array_equal(loaded.transition_mean(), model.transition_mean())
    np.testing.assert_array_equal(loaded.initial_distribution(), model.initial_distribution())
    assert loaded.concentration == model.concentration
    assert loaded.heldout_log_likelihood == model.heldout_log_likelihood
    assert loaded.terminal_states == TERMINAL and loaded.seed == 4
    assert (tmp_path / "dirichlet" / "card.md").read_text().startswith("# Model card")


def test_dirichlet_model_with_a_given_prior_mean_round_trips(tmp_path):
    tr = Transitions(state=np.array([0, 1]), action=np.array([1, 0]),
                     next_state=np.array([1, 2]), episode=np.array([0, 0]),
                     first_states=np.array([0]))
    prior = np.random.default_rng(0).dirichlet(np.ones(3), size=(3, 2))
    model = DirichletTabularModel(3, 2, [2], np.array([0.0, 0.0, 1.0]), concentration=2.0)
    model.fit_transitions(tr, prior_mean=prior)
    np.testing.assert_allclose(model.transition_mean()[0, 0], prior[0, 0])
    model.save(tmp_path / "m")
    loaded = DirichletTabularModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.prior_mean, prior)
    np.testing.assert_array_equal(loaded.transition_mean(), model.transition_mean())


@pytest.fixture(scope="module")
def neural(tables, train_and_heldout):
    train, heldout = train_and_heldout
    model = NeuralTabularModel(tables.state_features, N_ACTIONS, TERMINAL, reward_on_entry(),
                               hidden=32, seed=0)
    report = model.fit_transitions(train, heldout, max_epochs=1, progress=False)
    return model, report


def test_neural_model_gives_a_proper_table_and_round_trips(tmp_path, neural):
    model, report = neural
    assert report.epochs == 1
    table = model.transition_mean()
    assert table.shape == (N_STATES, N_ACTIONS, N_STATES)
    np.testing.assert_allclose(table.sum(axis=2), 1.0)
    assert np.all(table >= 0)
    for state in TERMINAL:
        assert np.all(table[state, :, state] == 1.0)
    model.save(tmp_path / "neural")
    loaded = load_world_model(tmp_path / "neural")
    assert isinstance(loaded, NeuralTabularModel)
    assert loaded.hidden == 32
    np.testing.assert_array_equal(loaded.transition_mean(), table)
    np.testing.assert_array_equal(loaded.initial_distribution(), model.initial_distribution())


def test_neural_model_refuses_bad_input(tables, train_and_heldout):
    train, _ = train_and_heldout
    with pytest.raises(InvalidInputError, match="state_features"):
        NeuralTabularModel(np.zeros(N_STATES), N_ACTIONS, TERMINAL, reward_on_entry())
    with pytest.raises(InvalidInputError, match="reward_on_entry"):
        NeuralTabularModel(tables.state_features, N_ACTIONS, TERMINAL, np.zeros(3))
    model = NeuralTabularModel(tables.state_features, N_ACTIONS, TERMINAL, reward_on_entry(),
                               hidden=8)
    empty = train.select_episodes(np.zeros(300, dtype=bool))
    with pytest.raises(InvalidInputError, match="held-out"):
        model.fit_transitions(train, empty, max_epochs=1, progress=False)
    with pytest.raises(InvalidInputError, match="unknown training option"):
        model.fit_transitions(train, train, epochs=1)


def imagine_checks(model, tables):
    belief = Belief({"state": torch.tensor([0, 100, 500, 713, SURVIVAL])})
    actions = torch.tensor([[[a] for a in range(6)]] * 5, dtype=torch.float64)
    forecast = model.imagine(belief, actions, n_samples=40, seed=3)
    samples = forecast.samples
    assert samples.shape == (40, 5, 6, 1)
    states = samples[..., 0].numpy()
    assert np.all(states == np.round(states))
    assert states.min() >= 0 and states.max() <= N_STATES - 1
    # Terminal starts stay put; once a path is terminal it stays terminal (same state).
    assert np.all(states[:, 3] == 713) and np.all(states[:, 4] == SURVIVAL)
    terminal = np.isin(states, TERMINAL)
    for step in range(1, 6):
        was = terminal[:, :, step - 1]
        assert np.all(states[:, :, step][was] == states[:, :, step - 1][was])
    assert not np.all(states[:, :3] == states[:1, :3])  # live patients do move
    repeat = model.imagine(belief, actions, n_samples=40, seed=3)
    assert torch.equal(repeat.samples, samples)
    assert not torch.equal(model.imagine(belief, actions, n_samples=40, seed=4).samples,
                           samples)
    with pytest.raises(InvalidInputError, match=r"\[B, H, 1\]"):
        model.imagine(belief, actions[..., 0], n_samples=2)
    with pytest.raises(InvalidInputError, match="action"):
        model.imagine(belief, torch.full((5, 2, 1), 25.0), n_samples=2)
    with pytest.raises(InvalidInputError, match="belief has 5 subjects"):
        model.imagine(belief, actions[:2], n_samples=2)


def test_dirichlet_imagine_samples_valid_paths(train_and_heldout, tables):
    train, _ = train_and_heldout
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                  concentration=10.0)
    model.fit_transitions(train)
    imagine_checks(model, tables)


def test_neural_imagine_samples_valid_paths(neural, tables):
    imagine_checks(neural[0], tables)


def test_imagined_one_step_frequencies_follow_the_table(train_and_heldout):
    train, _ = train_and_heldout
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                  concentration=10.0)
    model.fit_transitions(train)
    start, action = int(train.state[0]), int(train.action[0])
    forecast = model.imagine(Belief({"state": torch.tensor([start])}),
                             torch.tensor([[[float(action)]]]), n_samples=20_000, seed=0)
    frequency = np.bincount(forecast.samples[:, 0, 0, 0].numpy().astype(int),
                            minlength=N_STATES) / 20_000
    assert np.abs(frequency - model.transition_mean()[start, action]).max() < 0.015


def test_encode_gives_the_last_logged_state():
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                  concentration=1.0)
    logs = episodes([[0, 1, 2, 3], [7, 8]], [[0, 0, 0, 0], [0, 0]])
    belief = model.encode(logs)
    assert belief.tensors["state"].tolist() == [3, 8]

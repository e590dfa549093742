"""Off-policy evaluation on tabular logs: WIS, FQE and the model-based estimator."""

import numpy as np
import pytest

from biowm.bench.ope import (
    behaviour_policy,
    episode_returns,
    evaluate_off_policy,
    fitted_q_evaluation,
    model_based_value,
    weighted_importance_sampling,
)
from biowm.core.errors import InvalidInputError
from biowm.domains.sepsis.mdp import (
    DEATH,
    N_ACTIONS,
    N_STATES,
    SURVIVAL,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
    terminal_mask,
    uniform_policy,
)
from biowm.domains.sepsis.simulator import simulate_episodes
from biowm.models.tabular import Transitions, transitions_from_trajectories
from biowm.models.tabular_mdp import TabularMDP, policy_value, state_values

TERMINAL = list(TERMINAL_STATES)


@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def clinician_logs(tables) -> Transitions:
    logs = simulate_episodes(tables.clinician_policy, 3000, seed=0)
    return transitions_from_trajectories(logs, N_STATES, N_ACTIONS)


def toy() -> Transitions:
    """Two one-step episodes from state 0: action 0 survives, action 1 dies."""
    return Transitions(state=np.array([0, 0]), action=np.array([0, 1]),
                       next_state=np.array([SURVIVAL, DEATH]), episode=np.array([0, 1]),
                       first_states=np.array([0, 0]))


def one_hot(action: int) -> np.ndarray:
    policy = np.zeros((N_STATES, N_ACTIONS))
    policy[:, action] = 1.0
    return policy


def test_behaviour_policy_is_the_logged_action_frequencies():
    behaviour = behaviour_policy(toy(), N_STATES, N_ACTIONS)
    np.testing.assert_allclose(behaviour[0, :2], [0.5, 0.5])
    assert behaviour[0, 2:].sum() == 0.0
    np.testing.assert_allclose(behaviour[1], 1.0 / N_ACTIONS)  # never visited: uniform
    np.testing.assert_allclose(behaviour.sum(axis=1), 1.0)


def test_wis_matches_the_hand_computed_weighted_mean():
    tr = toy()
    behaviour = behaviour_policy(tr, N_STATES, N_ACTIONS)
    target = np.full((N_STATES, N_ACTIONS), 0.0)
    target[:, 0], target[:, 1] = 0.8, 0.2
    estimate = weighted_importance_sampling(tr, target, behaviour, reward_on_entry())
    # Weights 0.8/0.5 = 1.6 and 0.2/0.5 = 0.4; returns 1 and 0.
    assert estimate.value == pytest.approx(1.6 / 2.0)
    assert estimate.effective_episodes == pytest.approx(2.0**2 / (1.6**2 + 0.4**2))


def test_wis_of_the_behaviour_policy_is_the_mean_logged_return(clinician_logs):
    behaviour = behaviour_policy(clinician_logs, N_STATES, N_ACTIONS)
    estimate = weighted_importance_sampling(clinician_logs, behaviour, behaviour,
                                            reward_on_entry())
    returns = episode_returns(clinician_logs, reward_on_entry())
    assert estimate.value == pytest.approx(returns.mean(), abs=1e-12)
    assert estimate.effective_episodes == pytest.approx(3000)
    assert set(np.unique(returns)) <= {0.0, 1.0}


def test_wis_of_a_policy_that_never_takes_a_logged_action_is_nan():
    tr = Transitions(state=np.array([0, 0]), action=np.array([0, 0]),
                     next_state=np.array([SURVIVAL, DEATH]), episode=np.array([0, 1]),
                     first_states=np.array([0, 0]))
    behaviour = behaviour_policy(tr, N_STATES, N_ACTIONS)
    estimate = weighted_importance_sampling(tr, one_hot(1), behaviour, reward_on_entry())
    assert np.isnan(estimate.value)
    assert estimate.effective_episodes == 0.0
    # One possible episode is enough for a (very uncertain) estimate.
    partly = weighted_importance_sampling(toy(), one_hot(1), behaviour_policy(
        toy(), N_STATES, N_ACTIONS), reward_on_entry())
    assert partly.value == 0.0 and partly.effective_episodes == pytest.approx(1.0)


def test_fqe_and_model_based_on_a_toy_log():
    tr = toy()
    terminal = terminal_mask()
    assert fitted_q_evaluation(tr, one_hot(0), reward_on_entry(), terminal).value == 1.0
    assert fitted_q_evaluation(tr, one_hot(1), reward_on_entry(), terminal).value == 0.0
    # An action never logged in state 0 takes the state's mean target.
    assert fitted_q_evaluation(tr, one_hot(7), reward_on_entry(), terminal).value == 0.5
    assert model_based_value(tr, one_hot(0), reward_on_entry(), TERMINAL,
                             concentration=1e-9) == pytest.approx(1.0, abs=1e-6)
    assert model_based_value(tr, one_hot(1), reward_on_entry(), TERMINAL,
                             concentration=1e-9) == pytest.approx(0.0, abs=1e-6)


def empirical_mdp(tr: Transitions, start: np.ndarray) -> TabularMDP:
    """Maximum-likelihood table; unlogged pairs get their state's pooled frequencies."""
    counts = np.zeros((N_STATES, N_ACTIONS, N_STATES))
    np.add.at(counts, (tr.state, tr.action, tr.next_state), 1.0)
    pair = counts.sum(axis=2, keepdims=True)
    pooled = counts.sum(axis=1)
    pooled = pooled / np.maximum(pooled.sum(axis=1, keepdims=True), 1.0)
    table = np.where(pair > 0, counts / np.maximum(pair, 1.0), pooled[:, None, :])
    return TabularMDP(table, reward_on_entry(), terminal_mask(), start)


@pytest.mark.parametrize("policy_name", ["clinician", "uniform", "always 4"])
def test_fqe_is_the_exact_value_on_the_empirical_model(clinician_logs, tables, policy_name):
    policy = {"clinician": tables.clinician_policy, "uniform": uniform_policy(),
              "always 4": one_hot(4)}[policy_name]
    start = np.bincount(clinician_logs.first_states, minlength=N_STATES) / 3000
    exact = float(start @ state_values(empirical_mdp(clinician_logs, start), policy))
    estimate = fitted_q_evaluation(clinician_logs, policy, reward_on_entry(), terminal_mask())
    assert estimate.value == pytest.approx(exact, abs=1e-6)


def test_on_policy_estimates_are_close_to_the_exact_value(clinician_logs, tables):
    exact = policy_value(tables.mdp(), tables.clinician_policy)
    estimates = evaluate_off_policy(clinician_logs, tables.clinician_policy, reward_on_entry(),
                                    TERMINAL, seed=0, posterior_draws=3)
    assert set(estimates) == {"wis", "fqe", "model_based", "wdr"}
    for name, estimate in estimates.items():
        assert estimate.estimator == name
        assert abs(estimate.value - exact) < 0.03, (name, estimate.value, exact)
    assert estimates["wis"].effective_episodes > 1000
    model_based = estimates["model_based"]
    assert 0.0 < model_based.low <= model_based.high < 1.0
    assert np.isnan(estimates["fqe"].low)


def test_evaluate_off_policy_refuses_a_malformed_policy(clinician_logs):
    with pytest.raises(InvalidInputError, match="sum to 1"):
        evaluate_off_policy(clinician_logs, np.full((N_STATES, N_ACTIONS), 0.5),
                            reward_on_entry(), TERMINAL)


def test_evaluate_off_policy_refuses_a_policy_of_the_wrong_shape(clinician_logs):
    with pytest.raises(InvalidInputError, match="does not fit a policy"):
        evaluate_off_policy(clinician_logs, np.full((N_STATES, 5), 0.2), reward_on_entry(),
                            TERMINAL)


def test_wdr_on_policy_matches_the_logged_returns(clinician_logs):
    from biowm.bench.ope import (
        _evaluation_model,
        behaviour_policy,
        episode_returns,
        weighted_doubly_robust,
    )

    behaviour = behaviour_policy(clinician_logs, N_STATES, N_ACTIONS)
    model = _evaluation_model(clinician_logs, N_STATES, N_ACTIONS, reward_on_entry(),
                              TERMINAL, seed=0)
    estimate = weighted_doubly_robust(clinician_logs, behaviour, behaviour, reward_on_entry(),
                                      model)
    # with the behaviour policy as target every weight is 1/n: the corrections telescope
    # and WDR is exactly the mean logged return
    assert estimate.value == pytest.approx(
        episode_returns(clinician_logs, reward_on_entry()).mean(), abs=1e-9)

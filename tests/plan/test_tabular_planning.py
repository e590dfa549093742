"""Pessimistic tabular planning and the offline planner, on the ICU-Sepsis tables.

Sizes are small (a few hundred logged episodes, two folds, one or two pessimism
candidates) so every plan takes seconds; exact values come from linear solves.
"""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.domains.sepsis.mdp import (
    N_ACTIONS,
    N_STATES,
    REFERENCE_VALUES,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
    terminal_mask,
)
from biowm.domains.sepsis.simulator import simulate_episodes
from biowm.models.tabular import DirichletTabularModel, Transitions, transitions_from_trajectories
from biowm.models.tabular_mdp import check_policy, policy_value, state_values
from biowm.plan.offline import CONFIDENCE_Z, OfflinePlannerConfig, plan_offline
from biowm.plan.tabular import Pessimism, optimal_policy, pessimistic_plan

TERMINAL = list(TERMINAL_STATES)
LIVE = ~terminal_mask()


@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def logged(tables) -> Transitions:
    logs = simulate_episodes(tables.clinician_policy, 300, seed=0)
    return transitions_from_trajectories(logs, N_STATES, N_ACTIONS)


@pytest.fixture(scope="module")
def fitted(logged) -> DirichletTabularModel:
    model = DirichletTabularModel(N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(),
                                  concentration=10.0)
    model.fit_transitions(logged)
    return model


def logged_support(counts: np.ndarray) -> np.ndarray:
    allowed = counts > 0
    allowed[~allowed.any(axis=1)] = True
    return allowed


# -- pessimistic_plan ---------------------------------------------------------------------


def test_optimal_policy_reaches_the_published_optimal_value(tables):
    mdp = tables.mdp()
    plan = optimal_policy(mdp)
    check_policy(plan.policy, N_STATES, N_ACTIONS)
    assert set(np.unique(plan.policy)) == {0.0, 1.0}
    value = policy_value(mdp, plan.policy)
    assert round(value, 4) == REFERENCE_VALUES["optimal"]
    # The planner's own values are the exact values of the policy it returns.
    np.testing.assert_allclose(plan.values, state_values(mdp, plan.policy), atol=1e-9)
    assert value > policy_value(mdp, tables.clinician_policy) + 0.09


def test_unconstrained_plan_without_pessimism_is_optimal(tables):
    mdp = tables.mdp()
    everything = np.ones((N_STATES, N_ACTIONS), dtype=bool)
    zeros = np.zeros((N_STATES, N_ACTIONS))
    plan = pessimistic_plan(mdp, zeros, zeros, Pessimism("none"), everything)
    assert float(mdp.initial @ plan.values) == pytest.approx(0.8751, abs=5e-5)
    assert policy_value(mdp, plan.policy) == pytest.approx(0.8751, abs=5e-5)


def test_halting_every_unseen_pair_makes_every_state_worth_zero(tables):
    mdp = tables.mdp()
    everything = np.ones((N_STATES, N_ACTIONS), dtype=bool)
    zeros = np.zeros((N_STATES, N_ACTIONS))
    plan = pessimistic_plan(mdp, zeros, zeros, Pessimism("halt", min_count=1), everything)
    np.testing.assert_array_equal(plan.values, np.zeros(N_STATES))
    assert float(mdp.initial @ plan.values) == 0.0
    assert np.all(plan.q[LIVE] == 0.0)


def test_plan_never_chooses_a_disallowed_action(tables):
    mdp = tables.mdp()
    rng = np.random.default_rng(0)
    allowed = rng.random((N_STATES, N_ACTIONS)) < 0.2
    allowed[np.arange(N_STATES), rng.integers(0, N_ACTIONS, N_STATES)] = True
    zeros = np.zeros((N_STATES, N_ACTIONS))
    plan = pessimistic_plan(mdp, zeros, zeros, Pessimism("none"), allowed)
    check_policy(plan.policy, N_STATES, N_ACTIONS)
    assert not plan.policy[~allowed].any()
    assert np.all(np.isneginf(plan.q[~allowed]))
    constrained = policy_value(mdp, plan.policy)
    assert constrained < REFERENCE_VALUES["optimal"]
    # Still optimal among allowed actions: no allowed action improves on the plan's Q.
    chosen_q = plan.q[np.arange(N_STATES), plan.policy.argmax(axis=1)]
    assert np.all(chosen_q[LIVE] >= plan.q[LIVE].max(axis=1) - 1e-9)


def test_plan_refuses_a_state_without_allowed_actions(tables):
    mdp = tables.mdp()
    allowed = np.ones((N_STATES, N_ACTIONS), dtype=bool)
    allowed[5] = False
    zeros = np.zeros((N_STATES, N_ACTIONS))
    with pytest.raises(InvalidInputError, match="at least one allowed action"):
        pessimistic_plan(mdp, zeros, zeros, Pessimism("none"), allowed)


@pytest.mark.parametrize(
    "kwargs", [{"kind": "optimistic"}, {"kind": "penalty", "strength": -1.0},
               {"kind": "halt", "min_count": -1}],
)
def test_pessimism_refuses_bad_settings(kwargs):
    with pytest.raises(InvalidInputError):
        Pessimism(**kwargs)


def test_pessimism_labels():
    assert Pessimism("none").label() == "none"
    assert Pessimism("penalty", 0.5).label() == "penalty 0.5"
    assert Pessimism("halt", min_count=3).label() == "halt n<3"


def test_penalised_values_are_lower_bounds_and_fall_with_strength(fitted):
    mdp = fitted.mdp()
    counts = fitted.visit_counts()
    allowed = logged_support(counts)
    plans = {s: pessimistic_plan(mdp, counts, fitted.posterior_concentration(),
                                 Pessimism("penalty", s), allowed) for s in (0.0, 2.0)}
    for plan in plans.values():
        assert not plan.policy[~allowed].any()
        # A penalised value never exceeds the exact model value of the same policy.
        assert np.all(plan.values <= state_values(mdp, plan.policy) + 1e-9)
        assert np.all((plan.values >= 0) & (plan.values <= 1 + 1e-9))
    assert np.all(plans[2.0].values <= plans[0.0].values + 1e-9)
    assert float(mdp.initial @ plans[2.0].values) < float(mdp.initial @ plans[0.0].values)


def test_halt_plan_only_relies_on_pairs_seen_often_enough(fitted):
    mdp = fitted.mdp()
    counts = fitted.visit_counts()
    allowed = logged_support(counts)
    plan = pessimistic_plan(mdp, counts, fitted.posterior_concentration(),
                            Pessimism("halt", min_count=3), allowed)
    chosen = plan.policy.argmax(axis=1)
    worth_something = LIVE & (plan.values > 1e-12)
    assert worth_something.any()
    assert np.all(counts[np.flatnonzero(worth_something), chosen[worth_something]] >= 3)


# -- plan_offline -------------------------------------------------------------------------


def offline(logged, features=None, **overrides):
    settings = {"prior": "pooled", "folds": 2, "progress": False,
                "candidates": (Pessimism("none"), Pessimism("halt", min_count=3))}
    settings.update(overrides)
    return plan_offline(logged, N_STATES, N_ACTIONS, TERMINAL, reward_on_entry(), features,
                        OfflinePlannerConfig(**settings))


@pytest.fixture(scope="module")
def default_plan(logged):
    return offline(logged)


def test_offline_plan_is_a_full_policy_chosen_from_the_candidates(default_plan, logged):
    plan = default_plan
    assert plan.policy.shape == (N_STATES, N_ACTIONS)
    check_policy(plan.policy, N_STATES, N_ACTIONS)
    assert plan.prior == "pooled"
    assert set(plan.selection) == {"none", "halt n<3"}
    assert plan.pessimism.label() in plan.selection
    assert plan.selection[plan.pessimism.label()] == max(plan.selection.values())
    assert all(0.0 < v < 1.0 for v in plan.selection.values())
    counts = plan.model.visit_counts()
    assert counts.sum() == len(logged)
    visited = LIVE & (counts.sum(axis=1) > 0)
    assert plan.states_with_data == int(visited.sum())
    # Deterministic where there are data.
    assert np.all(plan.policy[visited].max(axis=1) == 1.0)
    assert plan.model_value == pytest.approx(policy_value(plan.model.mdp(), plan.policy),
                                             abs=1e-12)


def test_unvisited_states_follow_the_logged_action_mix(default_plan):
    counts = default_plan.model.visit_counts()
    mix = counts.sum(axis=0) / counts.sum()
    unvisited = ~LIVE | (counts.sum(axis=1) == 0)
    assert (LIVE & unvisited).any()
    np.testing.assert_allclose(default_plan.policy[unvisited],
                               np.broadcast_to(mix, (int(unvisited.sum()), N_ACTIONS)))
    np.testing.assert_allclose(default_plan.support_only_policy[unvisited],
                               np.broadcast_to(mix, (int(unvisited.sum()), N_ACTIONS)))


PERMISSIVE_SD = 0.05


@pytest.fixture(scope="module")
def permissive_plan(logged):
    # With the state-pooled prior an unseen action is predicted as a mix of the logged
    # ones and can never beat the best of them; the neural prior can.
    return offline(logged, load_tables().state_features, prior="neural", neural_epochs=1,
                   candidates=(Pessimism("none"),), confident_sd=PERMISSIVE_SD)


def test_off_support_recommendations_are_confident_and_listed(permissive_plan):
    plan = permissive_plan
    counts = plan.model.visit_counts()
    assert plan.off_support, "expected some confident off-support recommendations at 300 eps"
    listed = {o.state for o in plan.off_support}
    for entry in plan.off_support:
        assert counts[entry.state, entry.action] == 0
        assert entry.q_sd <= PERMISSIVE_SD
        assert plan.policy[entry.state, entry.action] == 1.0
        # confident that it is better: its lower bound beats the best logged action
        assert entry.q - CONFIDENCE_Z * entry.q_sd > entry.best_logged_q
    # Every other visited live state gets an action the clinicians were seen to take.
    recommended = plan.policy.argmax(axis=1)
    visited = np.flatnonzero(LIVE & (counts.sum(axis=1) > 0))
    for state in visited:
        if state not in listed:
            assert counts[state, recommended[state]] > 0
    assert plan.off_support_fraction == pytest.approx(len(listed) / plan.states_with_data)
    # The support-only policy never leaves the logged support.
    support_choice = plan.support_only_policy.argmax(axis=1)
    assert np.all(counts[visited, support_choice[visited]] > 0)


def test_zero_confidence_threshold_keeps_every_recommendation_on_support(logged):
    plan = offline(logged, confident_sd=0.0, candidates=(Pessimism("none"),))
    assert plan.off_support == []
    assert plan.off_support_fraction == 0.0
    counts = plan.model.visit_counts()
    visited = np.flatnonzero(LIVE & (counts.sum(axis=1) > 0))
    recommended = plan.policy.argmax(axis=1)
    assert np.all(counts[visited, recommended[visited]] > 0)
    np.testing.assert_array_equal(plan.policy, plan.support_only_policy)


def test_neural_prior_plan(tables):
    logs = simulate_episodes(tables.clinician_policy, 100, seed=1)
    small = transitions_from_trajectories(logs, N_STATES, N_ACTIONS)
    plan = offline(small, tables.state_features, prior="neural", neural_epochs=1,
                   candidates=(Pessimism("none"),))
    assert plan.prior == "neural"
    assert set(plan.prior_log_likelihood) == {"pooled", "neural"}
    assert all(np.isfinite(v) for v in plan.prior_log_likelihood.values())
    assert plan.model.prior_mean is not None
    assert plan.model.prior_mean.shape == (N_STATES, N_ACTIONS, N_STATES)
    check_policy(plan.policy, N_STATES, N_ACTIONS)
    assert 0.0 < plan.model_value < 1.0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [({"prior": "magic"}, "prior must be"), ({"folds": 1}, "folds must be >= 2"),
     ({"candidates": ()}, "at least one pessimism candidate")],
)
def test_planner_config_refuses_bad_settings(overrides, words):
    with pytest.raises(InvalidInputError, match=words):
        OfflinePlannerConfig(**overrides)


def test_planner_refuses_empty_logs_and_neural_without_features(logged):
    empty = logged.select_episodes(np.zeros(logged.first_states.shape[0], dtype=bool))
    assert len(empty) == 0
    with pytest.raises(InvalidInputError, match="no transitions"):
        offline(empty)
    with pytest.raises(InvalidInputError, match="state features"):
        offline(logged, prior="neural")


def test_pooled_prior_never_leaves_the_logged_support(default_plan):
    assert default_plan.off_support == []


def test_where_every_action_is_halted_the_plan_follows_the_logged_mix(logged):
    plan = offline(logged, candidates=(Pessimism("halt", min_count=10**9),))
    counts = plan.model.visit_counts()
    visited = LIVE & (counts.sum(axis=1) > 0)
    mix = counts[visited] / counts[visited].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(plan.policy[visited], mix)

"""Exact evaluation of tabular MDPs: hand-solved chains, policy checks, the Q posterior sd."""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.models.tabular_mdp import (
    TabularMDP,
    check_policy,
    policy_value,
    q_standard_deviation,
    q_values,
    state_values,
)

# States: 0, 1 live; 2 "survived" (reward 1 on entry), 3 "died"; both terminal.
# Action 0 moves on, action 1 stays put (a loop that never ends).
SURVIVED, DIED = 2, 3


def chain() -> TabularMDP:
    t = np.zeros((4, 2, 4))
    t[0, 0] = [0.0, 0.5, 0.5, 0.0]  # from 0: half to 1, half survive
    t[1, 0] = [0.0, 0.0, 0.2, 0.8]  # from 1: survive 0.2, die 0.8
    t[0, 1, 0] = 1.0
    t[1, 1, 1] = 1.0
    t[SURVIVED, :, SURVIVED] = 1.0
    t[DIED, :, DIED] = 1.0
    reward = np.array([0.0, 0.0, 1.0, 0.0])
    terminal = np.array([False, False, True, True])
    return TabularMDP(t, reward, terminal, np.array([0.25, 0.75, 0.0, 0.0]))


def always(action: int) -> np.ndarray:
    policy = np.zeros((4, 2))
    policy[:, action] = 1.0
    return policy


def test_state_values_match_the_hand_solution():
    mdp = chain()
    values = state_values(mdp, always(0))
    # V(1) = 0.2; V(0) = 0.5 · 1 + 0.5 · V(1) = 0.6; terminal states are worth 0.
    np.testing.assert_allclose(values, [0.6, 0.2, 0.0, 0.0], atol=1e-12)
    assert policy_value(mdp, always(0)) == pytest.approx(0.25 * 0.6 + 0.75 * 0.2, abs=1e-12)


def test_a_mixed_policy_is_solved_exactly():
    mdp = chain()
    policy = np.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    # V(0) = 0.5 (0.5 + 0.5 · 0.2) + 0.5 V(0)  =>  V(0) = 0.6 (the loop only delays).
    np.testing.assert_allclose(state_values(mdp, policy)[:2], [0.6, 0.2], atol=1e-12)


def test_a_policy_that_loops_forever_is_worth_zero_not_nan():
    # I − P is singular here: the solver falls back to iteration.
    values = state_values(chain(), always(1))
    np.testing.assert_array_equal(values, np.zeros(4))


def test_q_values_average_to_the_state_values():
    mdp = chain()
    policy = np.array([[0.3, 0.7], [0.9, 0.1], [1.0, 0.0], [1.0, 0.0]])
    values = state_values(mdp, policy)
    q = q_values(mdp, values)
    live = ~mdp.terminal
    np.testing.assert_allclose((policy * q).sum(axis=1)[live], values[live], atol=1e-12)
    # expected_reward pays on entry and is zero from terminal states.
    np.testing.assert_allclose(mdp.expected_reward(), [[0.5, 0.0], [0.2, 0.0], [0, 0], [0, 0]])


def test_tabular_mdp_refuses_inconsistent_shapes():
    mdp = chain()
    with pytest.raises(InvalidInputError, match=r"\[S, A, S\]"):
        TabularMDP(np.zeros((4, 2, 3)), mdp.reward_on_entry, mdp.terminal, mdp.initial)
    with pytest.raises(InvalidInputError, match="initial"):
        TabularMDP(mdp.transitions, mdp.reward_on_entry, mdp.terminal, np.ones(3) / 3)


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        (np.full((4, 3), 1 / 3), r"shape \(4, 2\)"),
        (np.full((3, 2), 0.5), r"shape \(4, 2\)"),
        (np.array([[1.5, -0.5]] * 4), "non-negative"),
        (np.array([[np.nan, 1.0]] * 4), "finite"),
        (np.array([[0.5, 0.5], [0.5, 0.4], [1, 0], [1, 0]]), "row 1 sums to 0.9"),
    ],
)
def test_check_policy_refuses_malformed_policies(policy, words):
    with pytest.raises(InvalidInputError, match=words):
        check_policy(policy, 4, 2)
    with pytest.raises(InvalidInputError):
        state_values(chain(), policy)


def test_check_policy_accepts_a_distribution_within_tolerance():
    check_policy(np.full((4, 2), 0.5 + 1e-9), 4, 2)


def test_q_standard_deviation_matches_dirichlet_draws_and_shrinks_with_concentration():
    mdp = chain()
    values = state_values(mdp, always(0))
    concentration = np.full((4, 2), 20.0)
    sd = q_standard_deviation(mdp, values, concentration)
    # Monte Carlo: Q(0, 0) under Dirichlet(20 · T(0, 0, ·)) (zero entries stay zero).
    mean = mdp.transitions[0, 0]
    support = mean > 0
    rng = np.random.default_rng(0)
    draws = np.zeros((40_000, 4))
    draws[:, support] = rng.dirichlet(20.0 * mean[support], size=40_000)
    gain = mdp.reward_on_entry + values
    assert np.std(draws @ gain) == pytest.approx(sd[0, 0], rel=0.03)
    # Deterministic rows have no uncertainty; more concentration means less.
    assert sd[0, 1] == 0.0 and sd[1, 1] == 0.0
    tighter = q_standard_deviation(mdp, values, np.full((4, 2), 200.0))
    assert np.all(tighter[:, 0][:2] < sd[:, 0][:2])
    assert tighter[0, 0] == pytest.approx(sd[0, 0] * np.sqrt(21 / 201), rel=1e-12)

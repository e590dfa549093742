"""Tabular MDPs and their exact evaluation (finite states and actions).

An MDP here is undiscounted and episodic: a reward is paid on *entering* a state
(`reward_on_entry [S]`, e.g. 1 on entering "survived"), and terminal states end the
episode. Values are therefore probabilities of reaching the rewarded state when the
reward is an indicator. Everything is dense numpy float64: a 716-state, 25-action MDP
is evaluated exactly by one linear solve, so evaluation never needs Monte Carlo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biowm.core.errors import InvalidInputError


@dataclass
class TabularMDP:
    """`transitions [S, A, S]` rows summing to 1, `reward_on_entry [S]`, `terminal [S]`
    (bool), `initial [S]` (start distribution)."""

    transitions: np.ndarray
    reward_on_entry: np.ndarray
    terminal: np.ndarray
    initial: np.ndarray

    def __post_init__(self) -> None:
        s, a, s2 = self.transitions.shape
        if s != s2:
            raise InvalidInputError(f"transitions must be [S, A, S], got {self.transitions.shape}")
        for name in ("reward_on_entry", "terminal", "initial"):
            if getattr(self, name).shape != (s,):
                raise InvalidInputError(f"TabularMDP.{name} must have shape ({s},)")

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.transitions.shape[1])

    def expected_reward(self) -> np.ndarray:
        """r(s, a) = Σ_s' T(s, a, s') reward(s'), `[S, A]`; zero from terminal states."""
        reward = self.transitions @ self.reward_on_entry
        reward[self.terminal] = 0.0
        return reward


def check_policy(policy: np.ndarray, n_states: int, n_actions: int, tol: float = 1e-6) -> None:
    """Refuse a policy that is not `[S, A]` non-negative with rows summing to 1."""
    policy = np.asarray(policy)
    if policy.shape != (n_states, n_actions):
        raise InvalidInputError(
            f"policy must have shape ({n_states}, {n_actions}) (states × actions), "
            f"got {policy.shape}"
        )
    if not np.isfinite(policy).all() or (policy < -tol).any():
        raise InvalidInputError("policy probabilities must be finite and non-negative")
    sums = policy.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if bad.size:
        raise InvalidInputError(
            f"policy rows must sum to 1; row {int(bad[0])} sums to {sums[bad[0]]:.6f} "
            f"({bad.size} rows wrong)"
        )


def state_values(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Exact V^π(s) for every state (0 at terminal states), by one linear solve."""
    check_policy(policy, mdp.n_states, mdp.n_actions)
    live = ~mdp.terminal
    step = np.einsum("sa,sat->st", policy, mdp.transitions)
    reward = (policy * mdp.expected_reward()).sum(axis=1)
    inner = step[np.ix_(live, live)]
    system = np.eye(int(live.sum())) - inner
    values = np.zeros(mdp.n_states)
    try:
        values[live] = np.linalg.solve(system, reward[live])
    except np.linalg.LinAlgError:
        # A policy that can cycle forever among live states: fall back to iteration.
        values[live] = _iterate_values(inner, reward[live])
    return values


def _iterate_values(inner: np.ndarray, reward: np.ndarray, iterations: int = 5000) -> np.ndarray:
    values = np.zeros_like(reward)
    for _ in range(iterations):
        updated = reward + inner @ values
        if np.abs(updated - values).max() < 1e-12:
            return updated
        values = updated
    return values


def policy_value(mdp: TabularMDP, policy: np.ndarray) -> float:
    """Exact expected return from the initial distribution."""
    return float(mdp.initial @ state_values(mdp, policy))


def q_values(mdp: TabularMDP, values: np.ndarray) -> np.ndarray:
    """Q(s, a) = r(s, a) + Σ_s' T(s, a, s') V(s'), `[S, A]`."""
    return mdp.expected_reward() + mdp.transitions @ values


def q_standard_deviation(
    mdp: TabularMDP, values: np.ndarray, concentration: np.ndarray
) -> np.ndarray:
    """Posterior sd of Q(s, a) under a Dirichlet posterior with mean `mdp.transitions` and
    total concentration `concentration [S, A]`, holding the next-state values fixed:
    Var[Σ p_i g_i] = (E_p[g²] − E_p[g]²) / (α₀ + 1), with g = reward + value of s'."""
    gain = mdp.reward_on_entry + values
    mean = mdp.transitions @ gain
    second = mdp.transitions @ (gain**2)
    variance = np.maximum(second - mean**2, 0.0) / (concentration + 1.0)
    return np.sqrt(variance)

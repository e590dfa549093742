"""Pessimistic planning on tabular MDPs learned from logs.

Pessimism comes in two forms (compared in the sepsis benchmark):
- `penalty`: Q(s,a) minus `strength` times its posterior standard deviation (an LCB);
- `halt`: MOReL-style, state-action pairs seen fewer than `min_count` times lead to an
  absorbing halt state worth 0, so the plan never relies on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.models.tabular_mdp import TabularMDP, q_standard_deviation

HALT_VALUE = 0.0


@dataclass
class Pessimism:
    """How the planner distrusts its model: `kind` is "none", "penalty" or "halt"."""

    kind: str = "penalty"
    strength: float = 1.0
    min_count: int = 10

    def __post_init__(self) -> None:
        if self.kind not in ("none", "penalty", "halt"):
            raise InvalidInputError(
                f"pessimism kind must be none, penalty or halt, got {self.kind!r}"
            )
        if self.strength < 0 or self.min_count < 0:
            raise InvalidInputError("pessimism strength and min_count must be >= 0")

    def label(self) -> str:
        if self.kind == "penalty":
            return f"penalty {self.strength:g}"
        if self.kind == "halt":
            return f"halt n<{self.min_count}"
        return "none"


@dataclass
class PlanResult:
    """A deterministic plan: `policy [S, A]` (one-hot rows), its model `q [S, A]`, the
    pessimistic values it maximised, and `decided [S]`: states where some allowed action
    has positive pessimistic value (elsewhere every action ties at "give up", and the
    one-hot action is arbitrary — callers should fall back to a default there)."""

    policy: np.ndarray
    q: np.ndarray
    values: np.ndarray
    decided: np.ndarray


def pessimistic_plan(
    mdp: TabularMDP,
    counts: np.ndarray,
    concentration: np.ndarray,
    pessimism: Pessimism,
    allowed: np.ndarray,
    tolerance: float = 1e-12,
    max_rounds: int = 200,
) -> PlanResult:
    """Policy iteration on the model with pessimism, choosing only `allowed [S, A]` actions.

    `counts [S, A]` are logged visits of each pair (for the halt rule); `concentration`
    the posterior's total Dirichlet concentration per pair (for the penalty). The penalty
    is a fixed reward shaping, as in MOPO: `strength` × the posterior sd of Q(s, a)
    computed at the values of the unpenalised plan. Because a penalty is a negative
    reward, the planner may also give a state up (value 0, the worst outcome), which keeps
    values in [0, 1] and every evaluated policy proper. Each round evaluates the greedy
    policy exactly (one linear solve), so it converges in a handful of rounds where value
    iteration on a long-horizon undiscounted MDP needs hundreds.
    """
    if not allowed[~mdp.terminal].any(axis=1).all():
        raise InvalidInputError("every non-terminal state needs at least one allowed action")
    penalty = np.zeros((mdp.n_states, mdp.n_actions))
    if pessimism.kind == "penalty" and pessimism.strength > 0:
        reference = _policy_iteration(mdp, np.zeros_like(penalty), allowed,
                                      np.zeros_like(allowed), tolerance, max_rounds)
        penalty = pessimism.strength * q_standard_deviation(mdp, reference.values,
                                                            concentration)
    unknown = counts < pessimism.min_count if pessimism.kind == "halt" else np.zeros_like(
        allowed)
    return _policy_iteration(mdp, penalty, allowed, unknown, tolerance, max_rounds)


def _policy_iteration(
    mdp: TabularMDP, penalty: np.ndarray, allowed: np.ndarray, halts: np.ndarray,
    tolerance: float, max_rounds: int,
) -> PlanResult:
    """Maximise Σ (reward − penalty) with halting pairs (`halts`) and giving up worth 0."""
    reward = mdp.expected_reward() - penalty
    live = ~mdp.terminal
    rows = np.arange(mdp.n_states)

    def backup(values: np.ndarray) -> np.ndarray:
        q = np.where(halts, HALT_VALUE, reward + mdp.transitions @ values)
        q[mdp.terminal] = 0.0
        return np.where(allowed, q, -np.inf)

    values = np.zeros(mdp.n_states)
    active = np.zeros(mdp.n_states, dtype=bool)  # False: given up (or terminal), value 0
    chosen = np.zeros(mdp.n_states, dtype=np.int64)
    for _ in range(max_rounds):
        q = backup(values)
        best = q.max(axis=1)
        # Keep the current action unless another is better by more than round-off, so
        # near-ties cannot make the policy cycle.
        current = q[rows, chosen]
        greedy = np.where(active & (current >= best - tolerance), chosen, q.argmax(axis=1))
        now_active = live & (np.maximum(current, best) > tolerance) & ~halts[rows, greedy]
        if np.array_equal(greedy, chosen) and np.array_equal(now_active, active):
            break
        chosen, active = greedy, now_active
        step = np.where(active[:, None], mdp.transitions[rows, chosen], 0.0)
        gain = np.where(active, reward[rows, chosen], 0.0)
        values = np.zeros(mdp.n_states)
        system = np.eye(int(live.sum())) - step[np.ix_(live, live)]
        try:
            values[live] = np.linalg.solve(system, gain[live])
        except np.linalg.LinAlgError:  # a closed loop in a maximum-likelihood model
            values[live] = np.linalg.lstsq(system, gain[live], rcond=None)[0]
    q = backup(values)
    policy = np.zeros_like(q)
    policy[rows, chosen] = 1.0
    return PlanResult(policy=policy, q=q, values=values, decided=active)


def optimal_policy(mdp: TabularMDP) -> PlanResult:
    """The exact optimal deterministic policy (value iteration, no pessimism)."""
    everything = np.ones((mdp.n_states, mdp.n_actions), dtype=bool)
    zeros = np.zeros((mdp.n_states, mdp.n_actions))
    return pessimistic_plan(mdp, zeros, zeros, Pessimism("none"), everything, tolerance=1e-12)

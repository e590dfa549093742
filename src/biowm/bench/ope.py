"""Off-policy evaluation on tabular MDPs: a policy's value from behaviour logs alone.

Five estimators, each from logs *not* used to choose the policy:
- weighted importance sampling (WIS): episode returns reweighted by Π π(a|s) / π_b(a|s),
  with π_b the logged action frequencies per state, normalised by the weights' sum;
- fitted-Q evaluation (FQE): iterate Q(s, a) ← mean over logged (s, a, s') of
  r(s') + Σ_a' π(a'|s') Q(s', a'); pairs the logs never tried take their state's
  count-weighted mean (tabular FQE with maximum-likelihood targets);
- model-based: the exact value of the policy under the hierarchical Dirichlet posterior
  mean learned from the evaluation logs, with a posterior interval from sampled tables;
- weighted doubly robust (WDR): the model-based values corrected by self-normalised
  per-decision importance weights (consistent when either part is right);
- model-based with a neural prior: as model-based, but the Dirichlet prior is a neural
  next-state model of the evaluation logs over the state features, which keeps the
  policy's action effects that the state-pooled prior shrinks away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.models.tabular import DirichletTabularModel, Transitions, choose_concentration
from biowm.models.tabular_mdp import TabularMDP, check_policy, state_values

FALLBACK_CONCENTRATION = 10.0  # prior strength when the logs are too small to split
MIN_POLICY_WEIGHT = 20.0  # held-out transitions (in policy weight) to choose α by them


@dataclass
class OffPolicyEstimate:
    """One estimator's value estimate, with an interval where the estimator gives one."""

    estimator: str
    value: float
    low: float = float("nan")
    high: float = float("nan")
    effective_episodes: float = float("nan")


def check_indices(transitions: Transitions, n_states: int, n_actions: int) -> None:
    """Refuse logs whose states or actions do not fit a `[n_states, n_actions]` policy."""
    for name, values, size in (("state", transitions.state, n_states),
                               ("next state", transitions.next_state, n_states),
                               ("action", transitions.action, n_actions)):
        if values.size and (values.min() < 0 or values.max() >= size):
            raise InvalidInputError(
                f"logged {name} index {int(values.max())} does not fit a policy over "
                f"{n_states} states × {n_actions} actions")


def behaviour_policy(transitions: Transitions, n_states: int, n_actions: int) -> np.ndarray:
    """Logged action frequencies per state (uniform for states never visited)."""
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (transitions.state, transitions.action), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), 1.0 / n_actions)


def episode_returns(transitions: Transitions, reward_on_entry: np.ndarray) -> np.ndarray:
    n_episodes = transitions.first_states.shape[0]
    return np.bincount(transitions.episode, weights=reward_on_entry[transitions.next_state],
                       minlength=n_episodes)


def weighted_importance_sampling(
    transitions: Transitions, policy: np.ndarray, behaviour: np.ndarray,
    reward_on_entry: np.ndarray,
) -> OffPolicyEstimate:
    """Self-normalised trajectory-wise importance sampling."""
    n_episodes = transitions.first_states.shape[0]
    ratio = policy[transitions.state, transitions.action] / behaviour[
        transitions.state, transitions.action]
    log_ratio = np.full(transitions.state.shape, -np.inf)
    positive = ratio > 0
    log_ratio[positive] = np.log(ratio[positive])
    log_weight = np.bincount(transitions.episode, weights=np.where(positive, log_ratio, 0.0),
                             minlength=n_episodes)
    impossible = np.bincount(transitions.episode, weights=(~positive).astype(float),
                             minlength=n_episodes) > 0
    log_weight[impossible] = -np.inf
    if not np.isfinite(log_weight).any():
        return OffPolicyEstimate("wis", float("nan"), effective_episodes=0.0)
    weight = np.exp(log_weight - log_weight[np.isfinite(log_weight)].max())
    returns = episode_returns(transitions, reward_on_entry)
    effective = weight.sum() ** 2 / (weight**2).sum()
    return OffPolicyEstimate("wis", float((weight * returns).sum() / weight.sum()),
                             effective_episodes=float(effective))


def fitted_q_evaluation(
    transitions: Transitions, policy: np.ndarray, reward_on_entry: np.ndarray,
    terminal: np.ndarray, iterations: int = 2000, tolerance: float = 1e-10,
) -> OffPolicyEstimate:
    """Tabular FQE; the estimate averages V(s₀) over the logged first states."""
    n_states, n_actions = policy.shape
    pair = transitions.state * n_actions + transitions.action
    pair_counts = np.bincount(pair, minlength=n_states * n_actions).reshape(n_states, n_actions)
    state_counts = pair_counts.sum(axis=1)
    q = np.zeros((n_states, n_actions))
    values = np.zeros(n_states)
    for _ in range(iterations):
        target = reward_on_entry[transitions.next_state] + values[transitions.next_state]
        sums = np.bincount(pair, weights=target, minlength=n_states * n_actions).reshape(
            n_states, n_actions)
        state_mean = sums.sum(axis=1) / np.maximum(state_counts, 1)
        q = np.where(pair_counts > 0, sums / np.maximum(pair_counts, 1), state_mean[:, None])
        updated = (policy * q).sum(axis=1)
        updated[terminal] = 0.0
        if np.abs(updated - values).max() < tolerance:
            values = updated
            break
        values = updated
    return OffPolicyEstimate("fqe", float(values[transitions.first_states].mean()))


def model_based_value(
    transitions: Transitions, policy: np.ndarray, reward_on_entry: np.ndarray,
    terminal_states: list[int], concentration: float,
) -> float:
    """Exact value of `policy` under the pooled-prior Dirichlet posterior mean of
    `transitions` (prior strength `concentration`), from their logged first states."""
    n_states, n_actions = policy.shape
    model = DirichletTabularModel(n_states, n_actions, terminal_states, reward_on_entry,
                                  concentration=concentration)
    model.fit_transitions(transitions)
    start = np.bincount(transitions.first_states, minlength=n_states) / len(
        transitions.first_states)
    return float(start @ state_values(model.mdp(), policy))


def _heldout_split(transitions: Transitions, seed: int) -> tuple[Transitions, Transitions]:
    """80 / 20 episode split of the evaluation logs (for their model's own choices)."""
    heldout = np.random.default_rng(seed).random(transitions.first_states.shape[0]) < 0.2
    return transitions.select_episodes(~heldout), transitions.select_episodes(heldout)


def neural_evaluation_prior(
    transitions: Transitions, state_features: np.ndarray, n_actions: int,
    terminal_states: list[int], reward_on_entry: np.ndarray, seed: int = 0,
    max_epochs: int = 30,
) -> np.ndarray:
    """A neural next-state model of the evaluation logs (trained on 80 % of their
    episodes, early-stopped on the rest): the prior mean of `model_based_neural`."""
    from biowm.models.tabular_neural import NeuralTabularModel

    fit_part, check_part = _heldout_split(transitions, seed)
    network = NeuralTabularModel(state_features, n_actions, terminal_states, reward_on_entry,
                                 seed=seed)
    network.fit_transitions(fit_part, check_part, progress=False, max_epochs=max_epochs)
    return network.transition_mean()


def _evaluation_model(
    transitions: Transitions, n_states: int, n_actions: int, reward_on_entry: np.ndarray,
    terminal_states: list[int], seed: int, policy: np.ndarray | None = None,
    prior_mean: np.ndarray | None = None,
) -> DirichletTabularModel:
    """The pooled-prior Dirichlet model of the evaluation logs, its prior strength chosen
    by held-out likelihood on a 20 % episode split of the same logs. Given the `policy`
    to evaluate, held-out transitions count by how likely the policy is to take their
    action: the model is chosen for the pairs the policy will use, not for the average
    logged pair (which favours strong pooling and hides the policy's action effects)."""
    fit_part, check_part = _heldout_split(transitions, seed)
    alpha = FALLBACK_CONCENTRATION
    weights = None if policy is None else policy[check_part.state, check_part.action]
    if weights is not None and weights.sum() < MIN_POLICY_WEIGHT:
        weights = None
    if len(fit_part) and len(check_part):
        alpha, _ = choose_concentration(fit_part, check_part, n_states, n_actions,
                                        prior_mean=prior_mean, weights=weights)
    model = DirichletTabularModel(n_states, n_actions, terminal_states, reward_on_entry,
                                  concentration=alpha, seed=seed)
    model.fit_transitions(transitions, prior_mean=prior_mean)
    return model


def model_based_estimate(
    transitions: Transitions, policy: np.ndarray, reward_on_entry: np.ndarray,
    terminal_states: list[int], seed: int = 0, posterior_draws: int = 10,
    model: DirichletTabularModel | None = None,
) -> OffPolicyEstimate:
    """Exact value under the Dirichlet posterior mean fitted to the evaluation logs, with
    the 5–95 % range over `posterior_draws` sampled tables."""
    n_states, n_actions = policy.shape
    model = model or _evaluation_model(transitions, n_states, n_actions, reward_on_entry,
                                       terminal_states, seed, policy)
    rng = np.random.default_rng(seed)
    mdp = model.mdp()
    start = np.bincount(transitions.first_states, minlength=n_states) / len(
        transitions.first_states)
    value = float(start @ state_values(mdp, policy))
    draws = [float(start @ state_values(TabularMDP(model.sample_transitions(rng),
                                                   mdp.reward_on_entry, mdp.terminal, start),
                                        policy)) for _ in range(posterior_draws)]
    low, high = (np.quantile(draws, [0.05, 0.95]) if draws else (np.nan, np.nan))
    return OffPolicyEstimate("model_based", value, float(low), float(high))


def weighted_doubly_robust(
    transitions: Transitions, policy: np.ndarray, behaviour: np.ndarray,
    reward_on_entry: np.ndarray, model: DirichletTabularModel,
) -> OffPolicyEstimate:
    """Per-decision weighted doubly robust estimate (Thomas & Brunskill 2016, undiscounted):
    Σ_t Σ_i [w_t^i r_t^i − w_t^i Q̂(s_t^i, a_t^i) + w_{t−1}^i V̂(s_t^i)], with w_t the
    self-normalised cumulative importance ratios and Q̂, V̂ the evaluation model's values of
    the target policy; episodes that ended are absorbing (no reward, no value)."""
    mdp = model.mdp()
    values = state_values(mdp, policy)
    q = mdp.expected_reward() + mdp.transitions @ values
    n_episodes = transitions.first_states.shape[0]
    first_row = np.searchsorted(transitions.episode, np.arange(n_episodes))
    step = np.arange(len(transitions)) - first_row[transitions.episode]
    horizon = int(step.max()) + 1 if len(transitions) else 1
    ratio = policy[transitions.state, transitions.action] / behaviour[
        transitions.state, transitions.action]
    log_ratio = np.zeros((n_episodes, horizon))
    reward = np.zeros((n_episodes, horizon))
    q_taken = np.zeros((n_episodes, horizon))
    v_state = np.zeros((n_episodes, horizon))
    with np.errstate(divide="ignore"):
        log_ratio[transitions.episode, step] = np.log(ratio)
    reward[transitions.episode, step] = reward_on_entry[transitions.next_state]
    q_taken[transitions.episode, step] = q[transitions.state, transitions.action]
    v_state[transitions.episode, step] = values[transitions.state]
    cumulative = np.cumsum(log_ratio, axis=1)
    weight = np.exp(cumulative - np.where(np.isfinite(cumulative), cumulative, -np.inf).max(
        axis=0, initial=-np.inf))
    weight = np.nan_to_num(weight)
    totals = weight.sum(axis=0, keepdims=True)
    weight = np.divide(weight, totals, out=np.zeros_like(weight), where=totals > 0)
    previous = np.concatenate([np.full((n_episodes, 1), 1.0 / n_episodes), weight[:, :-1]],
                              axis=1)
    estimate = (weight * reward - weight * q_taken + previous * v_state).sum()
    return OffPolicyEstimate("wdr", float(estimate))


def evaluate_off_policy(
    transitions: Transitions, policy: np.ndarray, reward_on_entry: np.ndarray,
    terminal_states: list[int], seed: int = 0, posterior_draws: int = 10,
    neural_prior: np.ndarray | None = None,
) -> dict[str, OffPolicyEstimate]:
    """Every estimator of `policy`'s value from `transitions` (the evaluation logs); with a
    `neural_prior` (see `neural_evaluation_prior`) also the model-based estimate whose
    Dirichlet prior is that neural model (`model_based_neural`)."""
    n_states, n_actions = policy.shape
    check_policy(policy, n_states, n_actions)
    check_indices(transitions, n_states, n_actions)
    terminal = np.zeros(n_states, dtype=bool)
    terminal[terminal_states] = True
    behaviour = behaviour_policy(transitions, n_states, n_actions)
    model = _evaluation_model(transitions, n_states, n_actions, reward_on_entry,
                              terminal_states, seed, policy)
    estimates = {
        "wis": weighted_importance_sampling(transitions, policy, behaviour, reward_on_entry),
        "fqe": fitted_q_evaluation(transitions, policy, reward_on_entry, terminal),
        "model_based": model_based_estimate(transitions, policy, reward_on_entry,
                                            terminal_states, seed, posterior_draws, model),
        "wdr": weighted_doubly_robust(transitions, policy, behaviour, reward_on_entry, model),
    }
    if neural_prior is not None:
        neural_model = _evaluation_model(transitions, n_states, n_actions, reward_on_entry,
                                         terminal_states, seed, policy, neural_prior)
        estimate = model_based_estimate(transitions, policy, reward_on_entry, terminal_states,
                                        seed, posterior_draws, neural_model)
        estimates["model_based_neural"] = OffPolicyEstimate(
            "model_based_neural", estimate.value, estimate.low, estimate.high)
    return estimates

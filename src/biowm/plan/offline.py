"""Offline model-based planning on a tabular MDP, with every choice made from the logs.

The pipeline, given logged transitions and nothing else:
1. Prior: the hierarchical Dirichlet model's prior mean is either the state-pooled
   next-state distribution or a neural model's prediction from the state features;
   the one with the better held-out predictive likelihood is kept, and so is the
   prior strength α (episode folds, never the true tables).
2. Pessimism: each candidate (none, LCB penalties, MOReL-style halts) is planned on all
   folds but one and scored by model-based off-policy evaluation on the held-out fold;
   the best mean held-out value wins.
3. The final model is fitted to all logs and planned with the chosen pessimism, choosing
   only actions the clinicians were seen to take in that state, unless the model's
   posterior sd of Q(s, a) is below `confident_sd`; each such off-support
   recommendation is listed with its evidence. States the logs never visited follow the
   logged overall action mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from biowm.bench.ope import model_based_value
from biowm.core.errors import InvalidInputError
from biowm.models.tabular import (
    DirichletTabularModel,
    Transitions,
    choose_concentration,
)
from biowm.models.tabular_mdp import q_standard_deviation, state_values
from biowm.plan.tabular import Pessimism, PlanResult, pessimistic_plan

console = Console(stderr=True)

CONFIDENCE_Z = 2.0  # an off-support action's Q must beat the best logged Q by 2 sd

DEFAULT_CANDIDATES = (
    Pessimism("none"),
    Pessimism("penalty", 0.5),
    Pessimism("penalty", 1.0),
    Pessimism("penalty", 2.0),
    Pessimism("halt", min_count=3),
    Pessimism("halt", min_count=10),
)


@dataclass
class OfflinePlannerConfig:
    """`prior`: "auto" (choose by held-out likelihood), "pooled" or "neural"."""

    prior: str = "auto"
    candidates: tuple[Pessimism, ...] = DEFAULT_CANDIDATES
    folds: int = 3
    confident_sd: float = 0.01
    seed: int = 0
    neural_epochs: int = 30
    neural_max_transitions: int = 100_000
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prior not in ("auto", "pooled", "neural"):
            raise InvalidInputError(f"prior must be auto, pooled or neural, got {self.prior!r}")
        if self.folds < 2:
            raise InvalidInputError(f"folds must be >= 2, got {self.folds}")
        if not self.candidates:
            raise InvalidInputError("at least one pessimism candidate is needed")


@dataclass
class OffSupportAction:
    """A recommendation outside the clinicians' observed support, with its evidence."""

    state: int
    action: int
    q: float
    q_sd: float
    best_logged_q: float


@dataclass
class OfflinePlan:
    policy: np.ndarray
    model: DirichletTabularModel
    pessimism: Pessimism
    prior: str
    prior_log_likelihood: dict[str, float]
    selection: dict[str, float]
    states_with_data: int
    model_value: float
    support_only_policy: np.ndarray
    off_support: list[OffSupportAction] = field(default_factory=list)

    @property
    def off_support_fraction(self) -> float:
        """Off-support recommendations as a fraction of states with data."""
        return len(self.off_support) / max(self.states_with_data, 1)


def episode_folds(n_episodes: int, folds: int, seed: int) -> np.ndarray:
    """Fold index per episode, balanced and seeded."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n_episodes) % folds)


def _neural_prior(part: Transitions, features: np.ndarray, n_actions: int,
                  terminal: list[int], reward: np.ndarray,
                  config: OfflinePlannerConfig) -> np.ndarray:
    """A neural next-state model trained on (at most `neural_max_transitions` of) `part`,
    early-stopped on a tenth of its episodes; returns its table `[S, A, S]`."""
    from biowm.models.tabular_neural import NeuralTabularModel

    rng = np.random.default_rng(config.seed + 1)
    n_episodes = part.first_states.shape[0]
    keep_share = min(1.0, config.neural_max_transitions / max(len(part), 1))
    chosen = rng.random(n_episodes) < keep_share
    stop = rng.random(n_episodes) < 0.1
    network = NeuralTabularModel(features, n_actions, terminal, reward, seed=config.seed)
    train, heldout = part.select_episodes(chosen & ~stop), part.select_episodes(chosen & stop)
    batch = int(np.clip(len(train) // 150, 256, 2048))
    network.fit_transitions(train, heldout, max_epochs=config.neural_epochs, batch_size=batch,
                            progress=config.progress)
    return network.transition_mean()


def _allowed_actions(counts: np.ndarray, terminal: list[int]) -> np.ndarray:
    allowed = counts > 0
    allowed[terminal] = True
    allowed[~allowed.any(axis=1)] = True
    return allowed


def plan_policy(model: DirichletTabularModel, pessimism: Pessimism, allowed: np.ndarray
                ) -> np.ndarray:
    """The pessimistic plan on `model`, following the logs where it has no preference."""
    result = pessimistic_plan(model.mdp(), model.visit_counts(),
                              model.posterior_concentration(), pessimism, allowed)
    return _follow_logs_where_undecided(result, model.visit_counts())


def _follow_logs_where_undecided(result: PlanResult, counts: np.ndarray) -> np.ndarray:
    """Where the pessimistic planner prefers no action (every allowed action is halted or
    worth nothing), follow the clinicians' logged action mix in that state."""
    policy = result.policy.copy()
    totals = counts.sum(axis=1, keepdims=True)
    logged_mix = counts / np.maximum(totals, 1.0)
    undecided = ~result.decided & (totals[:, 0] > 0)
    policy[undecided] = logged_mix[undecided]
    return policy


def _fill_unvisited(policy: np.ndarray, counts: np.ndarray, terminal: list[int]) -> np.ndarray:
    """States without logged visits follow the logged overall action mix."""
    overall = counts.sum(axis=0)
    overall = overall / overall.sum() if overall.sum() > 0 else np.full_like(overall, 1 / len(
        overall))
    unvisited = counts.sum(axis=1) == 0
    unvisited[terminal] = True
    policy = policy.copy()
    policy[unvisited] = overall
    return policy


def plan_offline(
    transitions: Transitions, n_states: int, n_actions: int, terminal_states: list[int],
    reward_on_entry: np.ndarray, state_features: np.ndarray | None = None,
    config: OfflinePlannerConfig | None = None,
) -> OfflinePlan:
    """Learn from `transitions` and return a pessimistic plan chosen from the logs alone."""
    config = config or OfflinePlannerConfig()
    if len(transitions) == 0:
        raise InvalidInputError("the logs hold no transitions to plan from")
    if config.prior == "neural" and state_features is None:
        raise InvalidInputError("the neural prior needs state features")
    n_episodes = transitions.first_states.shape[0]
    fold = episode_folds(n_episodes, config.folds, config.seed)
    use_neural = state_features is not None and config.prior != "pooled"

    def neural(part: Transitions) -> np.ndarray:
        assert state_features is not None
        return _neural_prior(part, state_features, n_actions, terminal_states,
                             reward_on_entry, config)

    # 1. prior and its strength: held-out likelihood of fold 0 under models of the rest.
    fit_part, check_part = transitions.select_episodes(fold != 0), transitions.select_episodes(
        fold == 0)
    neural_priors = {0: neural(fit_part)} if use_neural else {}
    candidates_prior = {"pooled": None, "neural": neural_priors.get(0)}
    names = {"auto": ["pooled", "neural"] if use_neural else ["pooled"],
             "pooled": ["pooled"], "neural": ["neural"]}[config.prior]
    scores: dict[str, tuple[float, float]] = {}
    for name in dict.fromkeys(["pooled", *names]):
        alpha, by_alpha = choose_concentration(fit_part, check_part, n_states, n_actions,
                                               prior_mean=candidates_prior[name])
        scores[name] = (by_alpha[alpha], alpha)
    prior = max(names, key=lambda name: scores[name][0])
    concentration = scores[prior][1]
    scoring_concentration = scores["pooled"][1]

    def fitted(part: Transitions, prior_mean: np.ndarray | None) -> DirichletTabularModel:
        model = DirichletTabularModel(n_states, n_actions, terminal_states, reward_on_entry,
                                      concentration=concentration, seed=config.seed)
        model.fit_transitions(part, prior_mean=prior_mean)
        return model

    # 2. pessimism by cross-fitted model-based OPE: plan on K-1 folds (the neural prior
    #    too is trained on those folds only), score on the held-out fold.
    totals = {candidate.label(): 0.0 for candidate in config.candidates}
    for k in range(config.folds):
        plan_part = transitions.select_episodes(fold != k)
        score_part = transitions.select_episodes(fold == k)
        prior_mean = None
        if prior == "neural":
            prior_mean = neural_priors[k] if k in neural_priors else neural(plan_part)
        model = fitted(plan_part, prior_mean)
        allowed = _allowed_actions(model.visit_counts(), terminal_states)
        for candidate in config.candidates:
            policy = _fill_unvisited(plan_policy(model, candidate, allowed), model.visit_counts(),
                                     terminal_states)
            totals[candidate.label()] += model_based_value(
                score_part, policy, reward_on_entry, terminal_states,
                scoring_concentration) / config.folds
        if config.progress:
            console.print(f"  pessimism selection: fold {k + 1}/{config.folds} scored")
    chosen = max(config.candidates, key=lambda c: totals[c.label()])

    # 3. final model on all logs.
    model = fitted(transitions, neural(transitions) if prior == "neural" else None)
    counts = model.visit_counts()
    allowed = _allowed_actions(counts, terminal_states)
    mdp = model.mdp()
    support_only = _fill_unvisited(plan_policy(model, chosen, allowed), counts, terminal_states)
    values = state_values(mdp, support_only)
    q_sd = q_standard_deviation(mdp, values, model.posterior_concentration())
    q_model = mdp.expected_reward() + mdp.transitions @ values
    best_logged = np.where(counts > 0, q_model, -np.inf).max(axis=1)
    visited = counts.sum(axis=1) > 0
    # Off the logged support only where the model is confident (small posterior sd) AND
    # confident that the action is better: its lower bound beats the best logged action.
    confident = (q_sd <= config.confident_sd) & (
        q_model - CONFIDENCE_Z * q_sd > best_logged[:, None])
    allowed = allowed | (confident & visited[:, None])
    result = pessimistic_plan(mdp, counts, model.posterior_concentration(), chosen, allowed)
    policy = _fill_unvisited(_follow_logs_where_undecided(result, counts), counts,
                             terminal_states)
    live_visited = visited.copy()
    live_visited[terminal_states] = False
    recommended = policy.argmax(axis=1)
    states = np.flatnonzero(live_visited & (counts[np.arange(n_states), recommended] == 0))
    off_support = [OffSupportAction(int(s), int(recommended[s]), float(q_model[s, recommended[s]]),
                                    float(q_sd[s, recommended[s]]), float(best_logged[s]))
                   for s in states]
    return OfflinePlan(
        policy=policy, model=model, pessimism=chosen, prior=prior,
        prior_log_likelihood={name: score for name, (score, _) in scores.items()},
        selection=totals, states_with_data=int(live_visited.sum()),
        model_value=float(mdp.initial @ state_values(mdp, policy)),
        support_only_policy=support_only, off_support=off_support,
    )

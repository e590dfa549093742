"""Bayesian tabular world model: a hierarchical Dirichlet posterior over transitions.

For finite-state, finite-action systems (e.g. patient-state clusters × treatment levels)
the transition table is learned from logged transitions. Each row T(s, a, ·) gets a
Dirichlet prior centred on a *prior mean* — by default the state's action-pooled
next-state distribution (itself shrunk towards the global next-state distribution), so a
rarely tried action is predicted like the state's other actions until its own data
disagree. The prior strength (concentration α) is an empirical-Bayes choice: the value
that maximises the held-out predictive likelihood of logged transitions. The posterior
gives uncertainty for free: its mean is the model, its concentration the confidence.

Logs are `Trajectories` with one observation channel holding the state index and one
action channel holding the action index; the action on an episode's final row is ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.registry import register_model
from biowm.models.tabular_mdp import TabularMDP

CONCENTRATION_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
GLOBAL_STRENGTH = 1.0


@dataclass
class Transitions:
    """Logged transitions as flat integer arrays (one entry per step taken)."""

    state: np.ndarray
    action: np.ndarray
    next_state: np.ndarray
    episode: np.ndarray
    first_states: np.ndarray

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def select_episodes(self, keep: np.ndarray) -> Transitions:
        """The transitions of the episodes flagged in `keep [n_episodes]` (bool)."""
        rows = keep[self.episode]
        renumber = np.cumsum(keep) - 1
        return Transitions(self.state[rows], self.action[rows], self.next_state[rows],
                           renumber[self.episode[rows]], self.first_states[keep])


def _integer_indices(values: torch.Tensor, what: str, upper: int) -> np.ndarray:
    array = values.detach().cpu().double().numpy()
    bad = ~np.isfinite(array) | (array != np.round(array)) | (array < 0) | (array >= upper)
    if bad.any():
        position = np.argwhere(bad)[0]
        raise InvalidInputError(
            f"{what} {float(array[tuple(position)]):g} at {tuple(int(i) for i in position)} "
            f"is not a valid index; {what}s are integers 0..{upper - 1}"
        )
    return array.astype(np.int64)


def transitions_from_trajectories(
    data: Trajectories, n_states: int, n_actions: int,
    state_channel: str = "state", action_channel: str = "action",
) -> Transitions:
    """Flatten episodes into (s, a, s') transitions, refusing unknown state/action indices."""
    if state_channel not in data.obs_space.names:
        raise InvalidInputError(f"logs have no observation channel {state_channel!r}")
    if action_channel not in data.action_space.names:
        raise InvalidInputError(f"logs have no action channel {action_channel!r}")
    valid = torch.isfinite(data.times)
    state_index = data.obs_space.index(state_channel)
    if not bool(data.mask[..., state_index][valid].all()):
        raise InvalidInputError(f"logs have missing values in the {state_channel!r} channel")
    raw_states = torch.where(valid, data.obs[..., state_index], 0.0)
    states = _integer_indices(raw_states, "state", n_states)
    lengths = valid.sum(dim=1).numpy()
    steps = valid[:, 1:].numpy()
    # An action counts only where a next state follows: the final row's action is ignored.
    raw_actions = torch.where(valid[:, 1:], data.actions[:, :-1, data.action_space.index(
        action_channel)], 0.0)
    actions = _integer_indices(raw_actions, "action", n_actions)
    episode = np.broadcast_to(np.arange(len(data))[:, None], steps.shape)
    if (lengths < 1).any():
        raise InvalidInputError("every logged episode needs at least one state")
    return Transitions(
        state=states[:, :-1][steps], action=actions[steps], next_state=states[:, 1:][steps],
        episode=episode[steps], first_states=states[:, 0].copy(),
    )


def count_transitions(transitions: Transitions, n_states: int, n_actions: int) -> np.ndarray:
    """N(s, a, s') as float64 `[S, A, S]`."""
    flat = (transitions.state * n_actions + transitions.action) * n_states + transitions.next_state
    counts = np.bincount(flat, minlength=n_states * n_actions * n_states)
    return counts.reshape(n_states, n_actions, n_states).astype(np.float64)


def pooled_prior_mean(counts: np.ndarray, global_strength: float = GLOBAL_STRENGTH) -> np.ndarray:
    """Prior mean `[S, S]` per state: its action-pooled next-state frequencies shrunk
    towards the global next-state distribution (add-one smoothed, so never zero)."""
    pooled = counts.sum(axis=1)
    overall = pooled.sum(axis=0) + 1.0
    overall = overall / overall.sum()
    return (pooled + global_strength * overall) / (pooled.sum(axis=1, keepdims=True)
                                                   + global_strength)


def broadcast_prior(prior_mean: np.ndarray, n_actions: int) -> np.ndarray:
    """A `[S, S]` state-level prior as `[S, A, S]` (a view, no copy)."""
    if prior_mean.ndim == 2:
        return np.broadcast_to(prior_mean[:, None, :], (prior_mean.shape[0], n_actions,
                                                         prior_mean.shape[1]))
    return prior_mean


def posterior_mean(counts: np.ndarray, prior_mean: np.ndarray, concentration: float) -> np.ndarray:
    """E[T(s, a, ·) | data] = (N(s, a, ·) + α m(s, a, ·)) / (N(s, a) + α)."""
    prior = broadcast_prior(prior_mean, counts.shape[1])
    return (counts + concentration * prior) / (counts.sum(axis=2, keepdims=True) + concentration)


def log_predictive(
    counts: np.ndarray, prior_mean: np.ndarray, concentration: float, heldout: Transitions,
    weights: np.ndarray | None = None,
) -> float:
    """Mean (optionally `weights`-weighted) log posterior-predictive probability of
    held-out transitions (nats)."""
    prior = broadcast_prior(prior_mean, counts.shape[1])
    s, a, s2 = heldout.state, heldout.action, heldout.next_state
    row_total = counts.sum(axis=2)[s, a]
    probability = (counts[s, a, s2] + concentration * prior[s, a, s2]) / (row_total
                                                                         + concentration)
    return float(np.average(np.log(probability), weights=weights))


def choose_concentration(
    train: Transitions, heldout: Transitions, n_states: int, n_actions: int,
    grid: Sequence[float] = CONCENTRATION_GRID, prior_mean: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[float, dict[float, float]]:
    """Empirical Bayes: the α in `grid` whose posterior best predicts `heldout` transitions
    (each weighted by `weights`, e.g. how likely a policy is to take the logged action)."""
    counts = count_transitions(train, n_states, n_actions)
    prior = pooled_prior_mean(counts) if prior_mean is None else prior_mean
    scores = {float(alpha): log_predictive(counts, prior, alpha, heldout, weights)
              for alpha in grid}
    return max(scores, key=lambda alpha: scores[alpha]), scores


def _tabular_spaces(n_states: int, n_actions: int) -> tuple[Space, Space]:
    return (Space.of(Channel("state", "index", 0, n_states - 1)),
            Space.of(Channel("action", "index", 0, n_actions - 1)))


class TabularWorldModel:
    """What every tabular world model shares: fully observed states, a learned table
    `transition_mean() [S, A, S]`, a start distribution, and the `WorldModel` verbs."""

    static_space = Space()
    step = 1.0

    def __init__(self, n_states: int, n_actions: int, terminal_states: Sequence[int],
                 reward_on_entry: np.ndarray, seed: int = 0) -> None:
        self.n_states, self.n_actions = int(n_states), int(n_actions)
        self.obs_space, self.action_space = _tabular_spaces(self.n_states, self.n_actions)
        self.terminal_states = [int(s) for s in terminal_states]
        self.reward_on_entry = np.asarray(reward_on_entry, dtype=np.float64)
        if self.reward_on_entry.shape != (self.n_states,):
            raise InvalidInputError(f"reward_on_entry must have shape ({self.n_states},)")
        self.seed = seed
        self.initial_counts = np.zeros(self.n_states)

    def transition_mean(self) -> np.ndarray:
        raise NotImplementedError

    def transitions(self, data: Trajectories) -> Transitions:
        return transitions_from_trajectories(data, self.n_states, self.n_actions)

    def _fix_terminal(self, table: np.ndarray) -> np.ndarray:
        table = np.array(table, dtype=np.float64)
        table[self.terminal_states] = 0.0
        table[self.terminal_states, :, self.terminal_states] = 1.0
        return table

    def initial_distribution(self) -> np.ndarray:
        """Posterior-mean start distribution (add-half smoothing over states)."""
        smoothed = self.initial_counts + 0.5 / self.n_states
        smoothed[self.terminal_states] = 0.0
        return smoothed / smoothed.sum()

    def mdp(self) -> TabularMDP:
        terminal = np.zeros(self.n_states, dtype=bool)
        terminal[self.terminal_states] = True
        return TabularMDP(self.transition_mean(), self.reward_on_entry, terminal,
                          self.initial_distribution())

    def encode(self, history: Trajectories) -> Belief:
        """The belief is the last logged state (the state is fully observed)."""
        valid = torch.isfinite(history.times)
        last = valid.sum(dim=1) - 1
        if (last < 0).any():
            raise InvalidInputError("every history needs at least one state")
        states = history.obs[torch.arange(len(history)), last, history.obs_space.index("state")]
        index = _integer_indices(states, "state", self.n_states)
        return Belief({"state": torch.from_numpy(index)})

    def imagine(
        self, belief: Belief, actions: torch.Tensor, n_samples: int = 100, seed: int = 0
    ) -> Forecast:
        """Sample state paths `[S, B, H, 1]` under `actions [B, H, 1]` (action indices) from
        the model's predictive; paths stay put once terminal."""
        return sample_paths(self.transition_mean(), self.obs_space, belief, actions,
                            n_samples, seed, self.n_actions)

    def _base_config(self, name: str) -> dict[str, Any]:
        return {"model_class": name, "n_states": self.n_states, "n_actions": self.n_actions,
                "terminal_states": self.terminal_states, "seed": self.seed}


@register_model("dirichlet_tabular")
class DirichletTabularModel(TabularWorldModel):
    """Hierarchical Dirichlet posterior over a tabular MDP's transitions (`WorldModel`)."""

    def __init__(
        self, n_states: int, n_actions: int, terminal_states: Sequence[int],
        reward_on_entry: np.ndarray, concentration: float | None = None,
        grid: Sequence[float] = CONCENTRATION_GRID, seed: int = 0,
    ) -> None:
        super().__init__(n_states, n_actions, terminal_states, reward_on_entry, seed)
        self.concentration = concentration
        self.grid = tuple(float(g) for g in grid)
        self.counts = np.zeros((self.n_states, self.n_actions, self.n_states))
        self.prior_mean: np.ndarray | None = None
        self.heldout_log_likelihood: dict[float, float] = {}

    # -- learning -------------------------------------------------------------------------
    def fit(
        self, train: Trajectories, val: Trajectories | None = None, **options: Any
    ) -> FitReport:
        """Count `train`; choose α by held-out likelihood on `val` unless it was given."""
        if options:
            raise InvalidInputError(f"unknown options for the Dirichlet model: {sorted(options)}")
        train_tr = self.transitions(train)
        val_tr = self.transitions(val) if val is not None and len(val) else None
        return self.fit_transitions(train_tr, val_tr)

    def fit_transitions(
        self, train: Transitions, heldout: Transitions | None = None,
        prior_mean: np.ndarray | None = None,
    ) -> FitReport:
        """As `fit`, from transition arrays; `prior_mean` replaces the pooled prior
        (e.g. a neural model's predictions, `[S, A, S]`)."""
        if len(train) == 0:
            raise InvalidInputError("no transitions to learn from")
        if self.concentration is None:
            if heldout is None or len(heldout) == 0:
                raise InvalidInputError("choosing the prior strength needs held-out transitions")
            self.concentration, self.heldout_log_likelihood = choose_concentration(
                train, heldout, self.n_states, self.n_actions, self.grid, prior_mean)
        self.counts = count_transitions(train, self.n_states, self.n_actions)
        self.initial_counts = np.bincount(train.first_states, minlength=self.n_states).astype(
            np.float64)
        self.prior_mean = prior_mean
        best = self.heldout_log_likelihood.get(self.concentration, float("nan"))
        return FitReport(epochs=0, best_val_loss=-best, stopped_because=(
            f"counted {len(train)} transitions; prior concentration {self.concentration:g}"))

    # -- the learned MDP ------------------------------------------------------------------
    def _prior(self) -> np.ndarray:
        return pooled_prior_mean(self.counts) if self.prior_mean is None else self.prior_mean

    def visit_counts(self) -> np.ndarray:
        """N(s, a): logged visits of each state-action pair, `[S, A]`."""
        return self.counts.sum(axis=2)

    def posterior_concentration(self) -> np.ndarray:
        """Total Dirichlet concentration N(s, a) + α per pair, `[S, A]`."""
        return self.visit_counts() + float(self.concentration or 0.0)

    def transition_mean(self) -> np.ndarray:
        table = posterior_mean(self.counts, self._prior(), float(self.concentration or 0.0))
        return self._fix_terminal(table)

    def sample_transitions(self, generator: np.random.Generator) -> np.ndarray:
        """One draw of the whole table from the posterior (gamma-normalised Dirichlet)."""
        alpha = self.counts + float(self.concentration or 0.0) * broadcast_prior(
            self._prior(), self.n_actions)
        draw = generator.gamma(np.maximum(alpha, 1e-12))
        draw /= np.maximum(draw.sum(axis=2, keepdims=True), 1e-300)
        return self._fix_terminal(draw)

    def save(self, directory: str | os.PathLike[str]) -> None:
        config = {
            **self._base_config("dirichlet_tabular"),
            "concentration": self.concentration, "grid": list(self.grid),
            "heldout_log_likelihood": {str(k): v for k, v in self.heldout_log_likelihood.items()},
        }
        tensors = {"counts": torch.from_numpy(self.counts.astype(np.float32)),
                   "initial_counts": torch.from_numpy(self.initial_counts),
                   "reward_on_entry": torch.from_numpy(self.reward_on_entry)}
        if self.prior_mean is not None:
            tensors["prior_mean"] = torch.from_numpy(np.ascontiguousarray(self.prior_mean))
        save_model_dir(directory, config, tensors, Manifest.create("world_model", config,
                                                                    self.seed), self._card())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DirichletTabularModel:
        config, tensors, _ = load_model_dir(directory)
        model = cls(config["n_states"], config["n_actions"], config["terminal_states"],
                    tensors["reward_on_entry"].numpy(), config["concentration"],
                    config["grid"], config["seed"])
        model.counts = tensors["counts"].double().numpy()
        model.initial_counts = tensors["initial_counts"].numpy()
        if "prior_mean" in tensors:
            model.prior_mean = tensors["prior_mean"].numpy()
        model.heldout_log_likelihood = {float(k): v for k, v in
                                        config["heldout_log_likelihood"].items()}
        return model

    def _card(self) -> str:
        visits = self.visit_counts()
        return "\n".join([
            "# Model card: Bayesian tabular world model (hierarchical Dirichlet)",
            "",
            f"- States × actions: {self.n_states} × {self.n_actions}; "
            f"logged transitions: {int(self.counts.sum())}",
            f"- State-action pairs with data: {int((visits > 0).sum())}",
            f"- Prior: {'given prior mean' if self.prior_mean is not None else 'state-pooled'}"
            f", concentration α = {self.concentration} (held-out log-likelihood per α: "
            f"{json.dumps({str(k): round(v, 4) for k, v in self.heldout_log_likelihood.items()})})",
            "",
            "## Limitations",
            "- Learned from behaviour logs only: for pairs the logs never tried, the model "
            "predicts the state's pooled behaviour, and says so through a low concentration.",
            "- Assumes the state index is a Markov state; hidden confounding within a state "
            "cluster is not modelled.",
            "",
        ])


def sample_paths(
    table: np.ndarray, obs_space: Space, belief: Belief, actions: torch.Tensor,
    n_samples: int, seed: int, n_actions: int,
) -> Forecast:
    """Monte Carlo state paths through a transition table, all samples and subjects batched."""
    if actions.dim() != 3 or actions.shape[-1] != 1:
        raise InvalidInputError(f"actions must be [B, H, 1] action indices, got "
                                f"{tuple(actions.shape)}")
    action_index = _integer_indices(actions[..., 0], "action", n_actions)
    start = belief.tensors["state"].numpy()
    b, h = action_index.shape
    if start.shape[0] != b:
        raise InvalidInputError(f"belief has {start.shape[0]} subjects but actions have {b}")
    generator = np.random.default_rng(seed)
    cumulative = np.cumsum(table, axis=2)
    cumulative[..., -1] = 1.0
    state = np.broadcast_to(start, (n_samples, b)).copy()
    paths = np.empty((n_samples, b, h), dtype=np.int64)
    for step in range(h):
        rows = cumulative[state, action_index[None, :, step]]
        state = (generator.random((n_samples, b))[..., None] > rows).sum(axis=-1)
        paths[:, :, step] = state
    samples = torch.from_numpy(paths[..., None].astype(np.float64))
    times = torch.arange(1, h + 1, dtype=torch.float64).expand(b, h)
    return Forecast(samples=samples, times=times, space=obs_space)

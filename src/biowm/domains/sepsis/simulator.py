"""ICU-Sepsis as a batched biowm `Simulator`, a Gymnasium environment and a data engine.

Randomness is counter-based (keyed by episode and step), so one seed gives the same
episodes whatever the batch. Logs are `Trajectories` with observation channel `state`
(0..715) and action channel `action` (0..24) per step; the final row of an episode is the
terminal state and its action is recorded as 0 and ignored by every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.random import subject_keys, uniform
from biowm.core.simulator import State
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.domains.sepsis.mdp import (
    EPISODE_STEP_LIMIT,
    N_ACTIONS,
    N_STATES,
    SURVIVAL,
    SepsisTables,
    load_tables,
    terminal_mask,
)
from biowm.models.tabular_mdp import check_policy

START_STREAM, ACTION_STREAM, TRANSITION_STREAM = 11, 12, 13
OBS_SPACE = Space.of(Channel("state", "index", 0, N_STATES - 1,
                             "ICU-Sepsis state: 0-712 patient clusters, 713 death, "
                             "714 survival, 715 absorbing"))
ACTION_SPACE = Space.of(Channel("action", "index", 0, N_ACTIONS - 1,
                                "5 × IV-fluid level + vasopressor level"))


def _draw(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: row i of `cumulative [B, K]` at uniform `u [B]`."""
    index = (u[:, None] > cumulative).sum(axis=1)
    return np.minimum(index, cumulative.shape[1] - 1)


class SepsisSimulator:
    """The true ICU-Sepsis dynamics, stepping every patient at once."""

    obs_space = OBS_SPACE
    action_space = ACTION_SPACE
    static_space = Space()
    time_unit = "step"
    default_dt = 1.0

    def __init__(self, tables: SepsisTables | None = None) -> None:
        self.tables = tables or load_tables()
        self._cumulative = np.cumsum(self.tables.transitions, axis=2)
        self._initial = np.cumsum(self.tables.initial)
        self._terminal = terminal_mask()

    def reset(self, n: int | None = None, subjects: Sequence[str] | None = None,
              seed: int = 0, offset: int = 0) -> State:
        if subjects is not None:
            n, offset = len(subjects), 0
        if n is None or n < 1:
            raise InvalidInputError("reset needs n >= 1 patients")
        keys = subject_keys(seed, n, offset)
        start = _draw(np.broadcast_to(self._initial, (n, N_STATES)),
                      uniform(keys, START_STREAM).numpy())
        return {"state": torch.from_numpy(start), "key": keys,
                "step": torch.zeros(n, dtype=torch.long)}

    def step(self, state: State, action: torch.Tensor, dt: float = 1.0) -> State:
        if dt != 1.0:
            raise InvalidInputError(f"ICU-Sepsis steps are one decision each (dt=1), got {dt}")
        self.action_space.validate(action, "action")
        actions = action[:, 0].numpy().astype(np.int64)
        current = state["state"].numpy()
        u = uniform(state["key"], TRANSITION_STREAM, state["step"]).numpy()
        following = _draw(self._cumulative[current, actions], u)
        following = np.where(self._terminal[current], current, following)
        return {"state": torch.from_numpy(following), "key": state["key"],
                "step": state["step"] + 1}

    def observe(self, state: State, rng: torch.Generator | None = None) -> torch.Tensor:
        return state["state"].double()[:, None]

    def static(self, state: State) -> torch.Tensor:
        return torch.zeros(len(state["state"]), 0)


def simulate_episodes(
    policy: np.ndarray, n_episodes: int, seed: int, offset: int = 0,
    tables: SepsisTables | None = None, max_steps: int = EPISODE_STEP_LIMIT,
) -> Trajectories:
    """`n_episodes` episodes under `policy [S, A]`, batched over episodes (no per-patient loop)."""
    if n_episodes < 1:
        raise InvalidInputError(f"need at least one episode, got {n_episodes}")
    check_policy(policy, N_STATES, N_ACTIONS)
    simulator = SepsisSimulator(tables)
    policy_cumulative = np.cumsum(policy, axis=1)
    state = simulator.reset(n_episodes, seed=seed, offset=offset)
    keys = state["key"]
    states = [state["state"].numpy()]
    actions: list[np.ndarray] = []
    alive = ~simulator._terminal[states[0]]
    step = 0
    while alive.any() and step < max_steps:
        index = np.flatnonzero(alive)
        current = states[-1]
        u = uniform(keys[index], ACTION_STREAM, step).numpy()
        chosen = np.zeros(n_episodes, dtype=np.int64)
        chosen[index] = _draw(policy_cumulative[current[index]], u)
        sub = {"state": torch.from_numpy(current[index]), "key": keys[index],
               "step": torch.full((index.size,), step, dtype=torch.long)}
        following = current.copy()
        following[index] = simulator.step(sub, torch.from_numpy(chosen[index, None]).double())[
            "state"].numpy()
        actions.append(chosen)
        states.append(following)
        alive = alive & ~simulator._terminal[following]
        step += 1
    state_matrix = np.stack(states, axis=1)
    action_matrix = np.concatenate([np.stack(actions, axis=1) if actions else
                                    np.zeros((n_episodes, 0), np.int64),
                                    np.zeros((n_episodes, 1), np.int64)], axis=1)
    # An episode's rows run until (and including) its first terminal state.
    terminal_seen = np.cumsum(simulator._terminal[state_matrix], axis=1)
    first_terminal = simulator._terminal[state_matrix] & (terminal_seen == 1)
    valid = (terminal_seen == 0) | first_terminal
    times = np.where(valid, np.arange(state_matrix.shape[1])[None, :], np.nan)
    action_matrix = np.where(valid & ~simulator._terminal[state_matrix], action_matrix, 0)
    return Trajectories(
        times=torch.from_numpy(times),
        obs=torch.from_numpy(np.where(valid, state_matrix, 0).astype(np.float32)[..., None]),
        actions=torch.from_numpy(action_matrix.astype(np.float32)[..., None]),
        mask=torch.from_numpy(valid[..., None]),
        static=torch.zeros(n_episodes, 0),
        subject_ids=[f"episode-{offset + i}" for i in range(n_episodes)],
        obs_space=OBS_SPACE, action_space=ACTION_SPACE, time_unit="step",
    )


def survival_rate(logs: Trajectories) -> float:
    """Fraction of logged episodes that end in the survival state."""
    last = torch.isfinite(logs.times).sum(dim=1) - 1
    final = logs.obs[torch.arange(len(logs)), last, 0]
    return float((final == SURVIVAL).double().mean())


class SepsisEnv(gym.Env):
    """One ICU-Sepsis patient as a `gymnasium.Env`: Discrete(716) states, Discrete(25)
    actions, reward 1 on survival, episodes end at death/survival or after 500 steps.
    `info` carries the state's feature vector and SOFA score."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, tables: SepsisTables | None = None) -> None:
        self._simulator = SepsisSimulator(tables)
        self.observation_space = gym.spaces.Discrete(N_STATES)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._state: State | None = None
        self._episode = 0
        self._seed = 0

    def _info(self) -> dict[str, Any]:
        index = int(self._state["state"][0]) if self._state else 0
        tables = self._simulator.tables
        return {"state_vector": tables.state_features[index].copy(),
                "sofa_score": float(tables.sofa[index])}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed, self._episode = int(seed), 0
        elif self._state is None:  # never seeded: draw a seed from gymnasium's own RNG
            self._seed = int(self.np_random.integers(0, 2**62))
        self._state = self._simulator.reset(1, seed=self._seed, offset=self._episode)
        self._episode += 1
        return int(self._state["state"][0]), self._info()

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise InvalidInputError("call reset() before step()")
        if not self.action_space.contains(action):
            raise InvalidInputError(f"action must be an integer 0..{N_ACTIONS - 1}, got {action}")
        self._state = self._simulator.step(self._state, torch.tensor([[float(action)]]))
        state = int(self._state["state"][0])
        terminated = bool(self._simulator._terminal[state])
        truncated = not terminated and int(self._state["step"][0]) >= EPISODE_STEP_LIMIT
        return state, float(state == SURVIVAL), terminated, truncated, self._info()

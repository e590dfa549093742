"""Gymnasium environments over any biowm simulator.

`SimulatorVectorEnv` steps all sub-environments as one batched simulator call;
`SimulatorEnv` is its single-environment form (it passes `gymnasium.utils.env_checker`).
What the agent controls, how it is rewarded and when an episode ends come from an
`EnvTask` that the domain supplies; the adapter itself knows no biology.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from biowm.core.errors import InvalidInputError
from biowm.core.simulator import Simulator, State, scatter_states
from biowm.core.space import Space

RewardFn = Callable[[State, torch.Tensor, State, torch.Tensor], torch.Tensor]
TerminatedFn = Callable[[State, torch.Tensor], torch.Tensor]


@dataclass
class EnvTask:
    """The agent's view of a simulator.

    `action_channels`: the simulator action channels the agent sets (the rest take their
    channel default). `reward(state, action, next_state, next_obs) -> [B]`,
    `terminated(next_state, next_obs) -> [B] bool`. One env step advances `step_dt`.
    """

    action_channels: list[str]
    step_dt: float
    max_episode_steps: int
    reward: RewardFn
    terminated: TerminatedFn | None = None
    reset_kwargs: dict[str, Any] = field(default_factory=dict)


def _box(space: Space) -> gym.spaces.Box:
    return gym.spaces.Box(
        low=space.low().astype(np.float32), high=space.high().astype(np.float32),
        dtype=np.float32,
    )


class SimulatorVectorEnv(VectorEnv):
    """`num_envs` subjects of one simulator stepped together (same-step autoreset)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, simulator: Simulator, task: EnvTask, num_envs: int) -> None:
        self.simulator = simulator
        self.task = task
        self.num_envs = num_envs
        self.agent_action_space = simulator.action_space.subspace(task.action_channels)
        self._action_index = [simulator.action_space.index(c) for c in task.action_channels]
        self._action_defaults = torch.tensor(simulator.action_space.defaults())
        self.single_observation_space = _box(simulator.obs_space)
        self.single_action_space = _box(self.agent_action_space)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._state: State | None = None
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._seed_rng = np.random.default_rng()
        self._obs_rng = torch.Generator().manual_seed(0)

    def _new_subjects(self, n: int) -> State:
        seed = int(self._seed_rng.integers(0, 2**62))
        return self.simulator.reset(n=n, seed=seed, **self.task.reset_kwargs)

    def _observe(self, state: State) -> torch.Tensor:
        return self.simulator.observe(state, self._obs_rng)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
            self._obs_rng = torch.Generator().manual_seed(int(seed))
        self._state = self._new_subjects(self.num_envs)
        self._steps[:] = 0
        obs = self._observe(self._state)
        return obs.numpy().astype(np.float32), {}

    def _full_action(self, actions: np.ndarray) -> torch.Tensor:
        agent = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        self.agent_action_space.validate(agent, "action")
        full = self._action_defaults.expand(self.num_envs, -1).clone()
        full[:, self._action_index] = torch.from_numpy(agent)
        return full

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise InvalidInputError("call reset() before step()")
        action = self._full_action(actions)
        state = self._state
        next_state = self.simulator.step(state, action, self.task.step_dt)
        obs = self._observe(next_state)
        reward = self.task.reward(state, action, next_state, obs)
        if self.task.terminated is not None:
            terminated = self.task.terminated(next_state, obs).numpy().astype(bool)
        else:
            terminated = np.zeros(self.num_envs, dtype=bool)
        self._steps += 1
        truncated = (self._steps >= self.task.max_episode_steps) & ~terminated
        done = terminated | truncated
        obs_np = obs.numpy().astype(np.float32)
        info: dict[str, Any] = {}
        if done.any():
            info["final_obs"] = np.where(done[:, None], obs_np, np.nan).astype(np.float32)
            info["_final_obs"] = done.copy()
            fresh = self._new_subjects(int(done.sum()))
            replace = torch.from_numpy(done)
            next_state = scatter_states(next_state, fresh, replace)
            obs_np = self._observe(next_state).numpy().astype(np.float32)
            self._steps[done] = 0
        self._state = next_state
        return obs_np, reward.numpy().astype(np.float64), terminated, truncated, info


class SimulatorEnv(gym.Env):
    """One subject of a simulator as a plain `gymnasium.Env`."""

    metadata = {"render_modes": []}

    def __init__(self, simulator: Simulator, task: EnvTask) -> None:
        self._vector = SimulatorVectorEnv(simulator, task, num_envs=1)
        self.observation_space = self._vector.single_observation_space
        self.action_space = self._vector.single_action_space
        self.render_mode = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and self._vector._state is None:
            seed = int(self.np_random.integers(0, 2**62))
        obs, info = self._vector.reset(seed=seed, options=options)
        return obs[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._vector.step(np.asarray(action)[None])
        if terminated[0] or truncated[0]:
            obs = info["final_obs"]
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

"""The glucose Gymnasium task: dose insulin every 5 minutes through a day of random meals."""

from __future__ import annotations

import torch

from biowm.core.gym_env import EnvTask, SimulatorEnv, SimulatorVectorEnv
from biowm.core.simulator import State
from biowm.domains.glucose.metrics import risk_index
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator, bg_mg_dl

SEVERE_HYPO_MG_DL = 40.0


def _reward(
    state: State, action: torch.Tensor, next_state: State, next_obs: torch.Tensor
) -> torch.Tensor:
    """Negative Kovatchev risk of the true plasma glucose after the step."""
    return -risk_index(bg_mg_dl(next_state))


def _terminated(next_state: State, next_obs: torch.Tensor) -> torch.Tensor:
    return bg_mg_dl(next_state) < SEVERE_HYPO_MG_DL


def glucose_task(step_minutes: int = 5, episode_days: int = 1) -> EnvTask:
    return EnvTask(
        action_channels=["insulin_u_per_min"],
        step_dt=float(step_minutes),
        max_episode_steps=episode_days * 1440 // step_minutes,
        reward=_reward,
        terminated=_terminated,
    )


def glucose_simulator(cohort: str = "all", episode_days: int = 1) -> GlucoseSimulator:
    return GlucoseSimulator(
        cohort=cohort, meal_schedule=MealSchedule(), scenario_days=episode_days + 1
    )


def make_env(
    num_envs: int | None = None, cohort: str = "all", episode_days: int = 1
) -> SimulatorEnv | SimulatorVectorEnv:
    """One environment (`num_envs=None`) or a batched vector environment."""
    sim = glucose_simulator(cohort, episode_days)
    task = glucose_task(episode_days=episode_days)
    if num_envs is None:
        return SimulatorEnv(sim, task)
    return SimulatorVectorEnv(sim, task, num_envs)

"""A small linear system with known dynamics, missing values and static covariates."""

import torch

from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories

STEP = 5.0
H = 12
OBS = Space.of(Channel("x_level", "au", -100.0, 100.0), Channel("y_level", "au", -100.0, 100.0))
ACT = Space.of(Channel("dose_mg", "mg", 0.0, 1.0))
STATIC = Space.of(Channel("offset_au", "au", 0.0, 5.0))


def linear_system(n_subjects: int, n_steps: int, seed: int, missing: float = 0.1):
    """x' = 0.9x + 2u + 0.1c + noise, y' = 0.8y + 0.3x + noise; u random 0/1; y 10% missing."""
    g = torch.Generator().manual_seed(seed)
    burn = 50
    total = n_steps + burn
    u = (torch.rand(n_subjects, total, generator=g) < 0.5).float()
    c = 2.0 * torch.rand(n_subjects, generator=g)
    x = torch.empty(n_subjects, total)
    y = torch.empty(n_subjects, total)
    x[:, 0], y[:, 0] = 11.0, 16.5
    for t in range(total - 1):
        e = torch.randn(2, n_subjects, generator=g)
        x[:, t + 1] = 0.9 * x[:, t] + 2.0 * u[:, t] + 0.1 * c + 0.2 * e[0]
        y[:, t + 1] = 0.8 * y[:, t] + 0.3 * x[:, t] + 0.2 * e[1]
    obs = torch.stack([x, y], dim=2)[:, burn:]
    mask = torch.ones_like(obs, dtype=torch.bool)
    mask[..., 1] = torch.rand(n_subjects, n_steps, generator=g) >= missing
    obs = torch.where(mask, obs, torch.nan)
    times = (torch.arange(n_steps, dtype=torch.float64) * STEP).expand(n_subjects, -1).clone()
    return Trajectories(
        times=times, obs=obs, actions=u[:, burn:, None], mask=mask, static=c[:, None],
        subject_ids=[f"s{seed}-{i:03d}" for i in range(n_subjects)],
        obs_space=OBS, action_space=ACT, static_space=STATIC,
    )

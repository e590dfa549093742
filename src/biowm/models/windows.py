"""Cut logged trajectories into (history, future actions, future observations) windows.

A window's origin is the last history step: the history holds observations up to and
including the origin and the actions taken before it; the future holds the actions from
the origin on (the first acts now) and the observations one to H steps later. History
times are made relative to the origin (0 = now, negative = past), so models see elapsed
time, not the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories


@dataclass
class Windows:
    history: Trajectories
    future_actions: torch.Tensor  # [N, H, A]
    future_obs: torch.Tensor  # [N, H, D]
    future_mask: torch.Tensor  # [N, H, D]
    subject_index: torch.Tensor  # [N] row of the source batch
    origin_index: torch.Tensor  # [N] time index of the origin in the source

    def __len__(self) -> int:
        return len(self.history)

    def select(self, index: torch.Tensor) -> Windows:
        return Windows(
            self.history.select(index), self.future_actions[index], self.future_obs[index],
            self.future_mask[index], self.subject_index[index], self.origin_index[index],
        )


def select_obs(data: Trajectories, channels: Sequence[str]) -> Trajectories:
    """The same trajectories restricted to observation `channels` (e.g. drop simulated truth)."""
    index = [data.obs_space.index(c) for c in channels]
    return Trajectories(
        times=data.times, obs=data.obs[..., index], actions=data.actions,
        mask=data.mask[..., index], static=data.static, subject_ids=data.subject_ids,
        obs_space=data.obs_space.subspace(channels), action_space=data.action_space,
        static_space=data.static_space, time_unit=data.time_unit,
    )


def make_windows(
    data: Trajectories, history_steps: int, horizon_steps: int, stride: int = 1,
    first_origin: int | None = None,
) -> Windows:
    """All windows with complete times, origins every `stride` steps, vectorised."""
    if history_steps < 1 or horizon_steps < 1 or stride < 1:
        raise InvalidInputError("history_steps, horizon_steps and stride must be >= 1")
    b, t = data.times.shape
    span = history_steps + horizon_steps
    if t < span:
        raise InvalidInputError(
            f"trajectories have {t} time points; windows need {span} "
            f"({history_steps} history + {horizon_steps} horizon)"
        )
    start = 0 if first_origin is None else first_origin - history_steps + 1
    if start < 0:
        raise InvalidInputError(f"first_origin must be >= {history_steps - 1}")
    times = data.times[:, start:].unfold(1, span, stride)  # [B, W, span]
    valid = torch.isfinite(times).all(dim=2)
    subject, window = torch.nonzero(valid, as_tuple=True)
    origin = start + window * stride + history_steps - 1
    return windows_at(data, subject, origin, history_steps, horizon_steps)


def windows_at(
    data: Trajectories, subject: torch.Tensor, origin: torch.Tensor, history_steps: int,
    horizon_steps: int,
) -> Windows:
    """Windows at given (subject row, origin time index) pairs, batched."""
    steps = torch.arange(history_steps + horizon_steps)
    index = origin[:, None] - (history_steps - 1) + steps[None, :]  # [N, span] source index
    if len(origin) and (int(index.min()) < 0 or int(index.max()) >= data.times.shape[1]):
        raise InvalidInputError("windows_at: a window reaches outside the trajectories")
    rows = subject[:, None]
    past = index[:, :history_steps]
    history = Trajectories(
        times=data.times[rows, past] - data.times[rows, past[:, -1:]],
        obs=data.obs[rows, past], actions=data.actions[rows, past].clone(),
        mask=data.mask[rows, past], static=data.static[subject],
        subject_ids=[data.subject_ids[i] for i in subject.tolist()],
        obs_space=data.obs_space, action_space=data.action_space,
        static_space=data.static_space, time_unit=data.time_unit,
    )
    # The action at the origin is the first future action, not part of the history.
    history.actions[:, -1] = 0.0
    future = index[:, history_steps - 1 : history_steps - 1 + horizon_steps]
    target = index[:, history_steps:]
    return Windows(
        history=history, future_actions=data.actions[rows, future],
        future_obs=data.obs[rows, target], future_mask=data.mask[rows, target],
        subject_index=subject, origin_index=origin,
    )


def pad_left(data: Trajectories, steps: int, step: float) -> Trajectories:
    """`steps` unobserved points before each subject's first one (mask False, actions 0,
    times extrapolated back by `step`), so fixed-length histories can start at day 0."""
    if steps <= 0:
        return data
    b = len(data)
    back = data.times[:, :1] + step * torch.arange(-steps, 0, dtype=data.times.dtype)[None, :]
    return Trajectories(
        times=torch.cat([back, data.times], 1),
        obs=torch.cat([data.obs.new_zeros(b, steps, data.obs.shape[2]), data.obs], 1),
        actions=torch.cat([data.actions.new_zeros(b, steps, data.actions.shape[2]),
                           data.actions], 1),
        mask=torch.cat([data.mask.new_zeros(b, steps, data.mask.shape[2]), data.mask], 1),
        static=data.static, subject_ids=data.subject_ids, obs_space=data.obs_space,
        action_space=data.action_space, static_space=data.static_space,
        time_unit=data.time_unit,
    )

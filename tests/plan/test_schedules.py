"""Exhaustive planning over budgeted on/off schedules."""

import itertools

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.core.world_model import Belief, Forecast
from biowm.plan.schedules import MAX_SCHEDULES, budgeted_schedules, score_schedules


def test_budgeted_schedules_enumerates_every_schedule_within_budget():
    schedules = budgeted_schedules(10, [2, 2])
    assert schedules.shape == (3136, 10, 2)  # (1 + 10 + 45)²
    assert torch.equal(schedules[0], torch.zeros(10, 2))
    assert set(schedules.unique().tolist()) == {0.0, 1.0}
    sessions = schedules.sum(dim=1)  # [P, 2]
    assert int(sessions.max()) == 2
    assert len({tuple(s.flatten().tolist()) for s in schedules}) == 3136
    # each (chemo count, radio count) pair appears C(10, a)·C(10, b) times
    counts = torch.zeros(3, 3)
    for a, b in sessions.long().tolist():
        counts[a, b] += 1
    per_channel = torch.tensor([1.0, 10.0, 45.0])
    assert torch.equal(counts, per_channel[:, None] * per_channel[None, :])


def test_small_budgets_and_budgets_beyond_the_horizon():
    one = budgeted_schedules(3, [1, 0])
    assert one.shape == (4, 3, 2)
    assert torch.equal(one[:, :, 1], torch.zeros(4, 3))
    assert torch.equal(one[1:, :, 0], torch.eye(3))
    every = budgeted_schedules(3, [7])  # a budget above the horizon allows every subset
    assert every.shape == (8, 3, 1)


def test_bad_or_too_many_schedules_are_refused():
    with pytest.raises(InvalidInputError, match=">= 0"):
        budgeted_schedules(5, [1, -1])
    with pytest.raises(InvalidInputError, match=f"at most {MAX_SCHEDULES}"):
        budgeted_schedules(10, [4, 4])  # 386² = 148,996
    assert len(budgeted_schedules(10, [3, 3])) == 176**2  # just inside the limit


OBS = Space.of(Channel("volume", "cm3", 0.0, 1000.0))


class FakeModel:
    """volume(t+h) = v + Σ_{s<=h} Σ_c w_c·(s+1)·a_c(s): each subject has its own weights."""

    obs_space, action_space, static_space, step = OBS, Space(), Space(), 1.0

    def __init__(self):
        self.calls = 0

    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 100,
                seed: int = 0) -> Forecast:
        self.calls += 1
        b, h, _ = actions.shape
        day = torch.arange(1, h + 1, dtype=torch.float32)[None, :, None]
        effect = (actions * belief.tensors["w"][:, None, :] * day).sum(2).cumsum(1)
        mean = (belief.tensors["v"][:, None] + effect)[..., None]
        samples = mean[None].expand(n_samples, -1, -1, -1) + 100.0  # samples are not the point
        times = torch.arange(1, h + 1).float().expand(b, h)
        return Forecast(samples=samples, times=times, space=OBS, extras={"mean": mean})


def final_volume(forecast: Forecast) -> torch.Tensor:
    return forecast.point()[:, -1, 0]


def brute_force(v: float, w: list[float], schedules: torch.Tensor) -> torch.Tensor:
    day = torch.arange(1, schedules.shape[1] + 1, dtype=torch.float32)
    return torch.tensor([v + sum(w[c] * float((s[:, c] * day).sum()) for c in range(len(w)))
                         for s in schedules])


@pytest.mark.parametrize("chunk_rollouts", [200_000, 30])
def test_score_schedules_finds_the_best_schedule_per_subject(chunk_rollouts):
    schedules = budgeted_schedules(5, [2, 1])
    belief = Belief({"v": torch.tensor([50.0, 60.0, 70.0]),
                     "w": torch.tensor([[-1.0, 1.0], [1.0, -2.0], [0.5, 0.5]])})
    model = FakeModel()
    cost = score_schedules(model, belief, schedules, final_volume,
                           chunk_rollouts=chunk_rollouts)
    assert cost.shape == (3, len(schedules))
    assert model.calls == (1 if chunk_rollouts > 3 * len(schedules) else 3)
    for i, (v, w) in enumerate(((50.0, [-1.0, 1.0]), (60.0, [1.0, -2.0]), (70.0, [0.5, 0.5]))):
        torch.testing.assert_close(cost[i], brute_force(v, w, schedules))
    best = schedules[cost.argmin(1)]
    # subject 0: chemo as late as possible (days 4 and 5), no radio
    assert torch.equal(best[0], torch.tensor([[0.0, 0], [0, 0], [0, 0], [1, 0], [1, 0]]))
    # subject 1: radio on the last day, no chemo
    assert torch.equal(best[1], torch.tensor([[0.0, 0], [0, 0], [0, 0], [0, 0], [0, 1]]))
    # subject 2: every session only adds, so nothing at all
    assert torch.equal(best[2], torch.zeros(5, 2))


def test_score_schedules_gives_inf_where_not_allowed():
    schedules = budgeted_schedules(4, [1])
    belief = Belief({"v": torch.tensor([10.0, 10.0]), "w": torch.tensor([[-1.0], [-1.0]])})
    allowed = torch.ones(2, len(schedules), dtype=torch.bool)
    allowed[1, 4] = False  # subject 1 may not have the session on day 4, the best one
    allowed[1, 0] = False
    cost = score_schedules(FakeModel(), belief, schedules, final_volume, allowed)
    assert torch.isinf(cost[1, 4]) and torch.isinf(cost[1, 0])
    assert int(torch.isinf(cost).sum()) == 2
    assert cost.argmin(1).tolist() == [4, 3]
    assert float(cost[0, 4]) == pytest.approx(10.0 - 4.0)


def test_budgeted_schedules_order_is_the_product_of_channel_subsets():
    schedules = budgeted_schedules(3, [1, 1])
    days = [(), (0,), (1,), (2,)]
    for p, (chemo, radio) in enumerate(itertools.product(days, days)):
        assert schedules[p, :, 0].nonzero().flatten().tolist() == list(chemo)
        assert schedules[p, :, 1].nonzero().flatten().tolist() == list(radio)

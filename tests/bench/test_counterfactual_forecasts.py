"""Counterfactual forecasts from logged histories: cutting histories, batched rollouts."""

import torch

from biowm.bench.counterfactual import counterfactual_point_forecasts, histories_until
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, Forecast

OBS = Space.of(Channel("level", "au", -1000.0, 1000.0))
ACT = Space.of(Channel("dose", "mg", 0.0, 5.0))


def data(b=4, t=6) -> Trajectories:
    times = torch.arange(t, dtype=torch.float64).expand(b, -1).clone()
    times[3, 4:] = torch.nan  # subject 3 has 4 points
    obs = (10.0 * torch.arange(b)[:, None] + torch.arange(t)[None, :]).float()[..., None]
    actions = torch.ones(b, t, 1)
    return Trajectories(times=times, obs=obs, actions=actions,
                        mask=torch.isfinite(times)[..., None], static=torch.zeros(b, 0),
                        subject_ids=[f"s{i}" for i in range(b)], obs_space=OBS, action_space=ACT)


class LastPlusDoses:
    """level(t+h) = last observed level + Σ doses up to h, from the history's last time."""

    obs_space, action_space, static_space, step = OBS, ACT, Space(), 1.0

    def __init__(self):
        self.encoded: list[int] = []

    def encode(self, history: Trajectories) -> Belief:
        self.encoded.append(len(history))
        end = history.lengths - 1
        return Belief({"last": history.obs[torch.arange(len(history)), end, 0]})

    def imagine(self, belief, actions, n_samples=100, seed=0):
        mean = (belief.tensors["last"][:, None] + actions[..., 0].cumsum(1))[..., None]
        times = torch.arange(1, actions.shape[1] + 1).float().expand(len(mean), -1)
        return Forecast(samples=mean[None].expand(n_samples, -1, -1, -1) - 1e3, times=times,
                        space=OBS, extras={"mean": mean})


def test_histories_until_cuts_after_the_origin():
    logged = data()
    cut = histories_until(logged, torch.tensor([2, 0, 3]), torch.tensor([0, 4, 2]))
    assert cut.subject_ids == ["s2", "s0", "s3"]
    assert cut.lengths.tolist() == [1, 5, 3]
    torch.testing.assert_close(cut.times[1, :5], logged.times[0, :5])
    assert torch.isnan(cut.times[1, 5:]).all() and torch.isnan(cut.times[0, 1:]).all()
    # actions after the origin are cleared; the origin's own action stays in the log
    assert cut.actions[1, :5, 0].tolist() == [1.0] * 5 and float(cut.actions[1, 5, 0]) == 0.0
    assert cut.obs.shape == (3, 6, 1) and float(cut.obs[0, 0, 0]) == 20.0
    assert torch.isnan(logged.times[3, 4:]).all() and not torch.isnan(logged.times[0]).any()
    assert float(logged.actions[0, 5, 0]) == 1.0  # the source is not modified


def test_counterfactual_point_forecasts_roll_out_every_candidate():
    logged = data()
    subject = torch.tensor([0, 1, 3, 2, 0])
    origin = torch.tensor([1, 5, 3, 0, 4])
    actions = torch.zeros(5, 3, 2, 1)  # K = 3 candidates over 2 steps
    actions[:, 1, 0] = 1.0
    actions[:, 2] = 2.0
    model = LastPlusDoses()
    prediction = counterfactual_point_forecasts(model, logged, subject, origin, actions)
    assert prediction.shape == (5, 3, 2, 1)
    last = logged.obs[subject, origin, 0]
    expected = last[:, None, None] + actions[..., 0].cumsum(2)
    torch.testing.assert_close(prediction[..., 0], expected)
    assert model.encoded == [5]
    chunked_model = LastPlusDoses()
    chunked = counterfactual_point_forecasts(chunked_model, logged, subject, origin, actions,
                                             chunk=2)
    assert chunked_model.encoded == [2, 2, 1]
    torch.testing.assert_close(chunked, prediction)

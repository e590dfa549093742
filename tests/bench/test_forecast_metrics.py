"""Forecast scores: RMSE, sample CRPS and interval coverage per horizon, and the flat summary."""

import itertools
import math

import pytest
import torch

from biowm.bench import (
    coverage_by_horizon,
    crps_by_horizon,
    crps_ensemble,
    rmse_by_horizon,
    score_forecast,
)
from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.core.world_model import Forecast

ONE = Space.of(Channel("y", "u"))
TWO = Space.of(Channel("a", "u"), Channel("b", "u"))
CRPS_STANDARD_NORMAL_AT_0 = 2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)  # 0.23369


def forecast(samples, space=ONE, step=5.0):
    _, b, h, _ = samples.shape
    times = (step * torch.arange(1, h + 1, dtype=torch.float64)).expand(b, h)
    return Forecast(samples=samples, times=times, space=space)


def brute_force_crps(samples, truth, fair=False):
    s = samples.shape[0]
    first = (samples - truth).abs().mean(dim=0)
    pairs = (samples[:, None] - samples[None, :]).abs().sum(dim=(0, 1))
    return first - 0.5 * pairs / (s * (s - 1) if fair else s * s)


def test_crps_of_a_point_mass_is_the_absolute_error():
    truth = torch.tensor([[[1.0], [-2.0], [10.0]]])  # [B=1, H=3, D=1]
    point = torch.tensor([[[3.0], [-2.5], [10.0]]])
    for s in (1, 7):
        samples = point.expand(s, -1, -1, -1).clone()
        crps = crps_by_horizon(forecast(samples), truth)
        assert torch.allclose(crps[:, 0], torch.tensor([2.0, 0.5, 0.0], dtype=torch.float64))


def test_crps_of_two_equally_likely_points_by_hand():
    # E|X - 0| = 0.5 and ½E|X - X'| = ½ · (2 of 4 pairs differ by 1) / 4 = 0.25
    samples = torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1)
    assert float(crps_ensemble(samples, torch.zeros(1, 1, 1))) == pytest.approx(0.25)


def test_sorted_crps_equals_the_all_pairs_energy_form():
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(13, 4, 3, 2, generator=gen, dtype=torch.float64) * 3
    truth = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)
    for fair in (False, True):
        assert torch.allclose(
            crps_ensemble(samples, truth, fair), brute_force_crps(samples, truth, fair)
        )


def test_crps_of_standard_normal_samples_at_zero():
    gen = torch.Generator().manual_seed(1)
    samples = torch.randn(4000, 50, 2, 1, generator=gen)
    crps = crps_by_horizon(forecast(samples), torch.zeros(50, 2, 1))
    assert torch.allclose(crps, torch.full_like(crps, CRPS_STANDARD_NORMAL_AT_0), atol=4e-3)


def test_coverage_of_a_calibrated_gaussian_is_its_level():
    gen = torch.Generator().manual_seed(2)
    mean = torch.randn(3000, 2, 1, generator=gen) * 5
    samples = mean + torch.randn(400, 3000, 2, 1, generator=gen)
    truth = mean + torch.randn(3000, 2, 1, generator=gen)
    for level in (0.5, 0.9):
        coverage = coverage_by_horizon(forecast(samples), truth, level=level)
        assert torch.allclose(coverage, torch.full_like(coverage, level), atol=0.03)
    too_narrow = mean + 0.2 * torch.randn(400, 3000, 2, 1, generator=gen)
    assert (coverage_by_horizon(forecast(too_narrow), truth, level=0.9) < 0.3).all()


def test_coverage_uses_the_forecast_intervals():
    gen = torch.Generator().manual_seed(3)
    f = forecast(torch.randn(21, 40, 3, 1, generator=gen))
    truth = 0.8 * torch.randn(40, 3, 1, generator=gen)
    low, high = f.interval(0.5)
    expected = ((truth >= low) & (truth <= high)).double().mean(dim=0)
    assert torch.allclose(coverage_by_horizon(f, truth, level=0.5), expected)
    with pytest.raises(InvalidInputError, match="level"):
        coverage_by_horizon(f, truth, level=1.0)


def test_rmse_is_of_the_sample_mean_per_horizon_and_channel():
    truth = torch.zeros(4, 3, 2)
    offset = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 4.0]])  # [H, D]
    spread = torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1)  # samples average to the offset
    samples = offset + spread + torch.zeros(2, 4, 3, 2)
    rmse = rmse_by_horizon(forecast(samples, TWO), truth)
    assert torch.allclose(rmse, offset.abs().double())


def test_masked_and_missing_truth_are_ignored():
    truth = torch.zeros(3, 2, 1)
    samples = torch.ones(5, 3, 2, 1)
    truth[0, 0, 0] = 100.0  # masked out below
    truth[1, 0, 0] = float("nan")  # missing
    mask = torch.ones(3, 2, 1, dtype=torch.bool)
    mask[0, 0, 0] = False
    mask[:, 1, 0] = False  # nothing valid at the second horizon step
    f = forecast(samples)
    for metric in (rmse_by_horizon, crps_by_horizon):
        values = metric(f, truth, mask)
        assert float(values[0, 0]) == pytest.approx(1.0)
        assert math.isnan(float(values[1, 0]))
    assert float(coverage_by_horizon(f, truth, mask, 0.9)[0, 0]) == 0.0


def test_score_forecast_keys_are_labelled_by_time_and_hold_plain_floats():
    gen = torch.Generator().manual_seed(4)
    samples = torch.randn(50, 8, 12, 1, generator=gen)
    truth = torch.randn(8, 12, 1, generator=gen)
    f = forecast(samples)
    scores = score_forecast(f, truth, None, [6, 12])
    metrics = ("rmse", "crps", "coverage50", "coverage90")
    expected = {f"{m}{at}" for m, at in itertools.product(metrics, ("", "@30", "@60"))}
    assert set(scores) == expected
    assert all(type(v) is float for v in scores.values())
    assert scores["rmse@60"] == pytest.approx(float(rmse_by_horizon(f, truth)[11, 0]))
    assert scores["crps@30"] == pytest.approx(float(crps_by_horizon(f, truth)[5, 0]))
    assert scores["crps"] == pytest.approx(float(crps_by_horizon(f, truth).mean()))
    pooled_rmse = float(((samples.mean(0) - truth) ** 2).mean().sqrt())
    assert scores["rmse"] == pytest.approx(pooled_rmse, rel=1e-6)
    assert scores["coverage90@60"] == pytest.approx(
        float(coverage_by_horizon(f, truth, level=0.9)[11, 0])
    )


def test_score_forecast_suffixes_channels_and_checks_its_input():
    f = forecast(torch.zeros(3, 2, 4, 2), TWO, step=15.0)
    scores = score_forecast(f, torch.zeros(2, 4, 2), None, [4])
    assert "rmse@60:a" in scores and "coverage90:b" in scores
    with pytest.raises(InvalidInputError, match="horizon step 5"):
        score_forecast(f, torch.zeros(2, 4, 2), None, [5])
    with pytest.raises(InvalidInputError, match="truth"):
        score_forecast(f, torch.zeros(2, 3, 2), None, [1])
    with pytest.raises(InvalidInputError, match="mask"):
        score_forecast(f, torch.zeros(2, 4, 2), torch.ones(2, 4), [1])

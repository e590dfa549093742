"""CGM sensor: Johnson S_U error statistics, AR(1) latent, clipping, reproducibility."""

import math

import numpy as np
import pytest
import torch

from biowm.core import random as crandom
from biowm.core.errors import InvalidInputError
from biowm.domains.glucose.patients import patient_table
from biowm.domains.glucose.sensor import CGMSensor
from biowm.domains.glucose.simulator import GlucoseSimulator, gsub_mg_dl

N_SUBJECTS = 40_000


def johnson_su_moments(s: CGMSensor) -> tuple[float, float]:
    """Mean and sd of xi + lambda·sinh((Z − gamma)/delta), Z ~ N(0, 1), in closed form."""
    xi, lam, gamma, delta = s.johnson_xi, s.johnson_lambda, s.johnson_gamma, s.johnson_delta
    omega = math.exp(delta**-2)
    mean = xi - lam * math.sqrt(omega) * math.sinh(gamma / delta)
    var = lam**2 / 2 * (omega - 1) * (omega * math.cosh(2 * gamma / delta) + 1)
    return mean, math.sqrt(var)


def test_closed_form_moments_agree_with_quadrature():
    s = CGMSensor()
    z, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / w.sum()
    x = s.johnson_xi + s.johnson_lambda * np.sinh((z - s.johnson_gamma) / s.johnson_delta)
    mean = float((w * x).sum())
    sd = float(np.sqrt((w * (x - mean) ** 2).sum()))
    assert johnson_su_moments(s) == pytest.approx((mean, sd), rel=1e-9)
    # the published GuardianRT-type set: a small positive bias and ~12 mg/dL spread
    assert mean == pytest.approx(0.761, abs=1e-3) and sd == pytest.approx(12.06, abs=1e-2)


def latent_path(s: CGMSensor, keys: torch.Tensor, n_samples: int) -> torch.Tensor:
    """The latent at samples 0..n_samples-1, `[B, n_samples]`."""
    out = [s.initial_latent(keys)]
    for k in range(1, n_samples):
        out.append(s.advance_latent(out[-1], keys, torch.full_like(keys, k)))
    return torch.stack(out, dim=1)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.numpy(), b.numpy())[0, 1])


@pytest.mark.parametrize("sample_minutes", [5, 1])
def test_error_mean_and_sd_match_johnson_su_over_many_subjects(sample_minutes):
    s = CGMSensor(sample_minutes=sample_minutes)
    keys = crandom.subject_keys(seed=2024, n=N_SUBJECTS)
    path = latent_path(s, keys, 31)
    expected_mean, expected_sd = johnson_su_moments(s)
    standard_error = expected_sd / math.sqrt(N_SUBJECTS)
    # at sample 0 and at a later sample the latent is N(0, 1) (stationary AR(1))
    for k in (0, 30):
        latent = path[:, k]
        assert float(latent.mean()) == pytest.approx(0.0, abs=0.03)
        assert float(latent.std()) == pytest.approx(1.0, abs=0.02)
        error = s.error_mg_dl(latent)
        assert float(error.mean()) == pytest.approx(expected_mean, abs=5 * standard_error)
        assert float(error.std()) == pytest.approx(expected_sd, rel=0.04)
        # skewness sign of the published set: long upper tail (gamma < 0)
        assert float(error.median()) < float(error.mean())


@pytest.mark.parametrize("sample_minutes", [5, 1, 3])
def test_latent_autocorrelation_is_0_7_at_a_15_minute_lag(sample_minutes):
    s = CGMSensor(sample_minutes=sample_minutes)
    keys = crandom.subject_keys(seed=7, n=20_000)
    lag = 15 // sample_minutes
    path = latent_path(s, keys, 2 * lag + 1)
    # across independent subjects, samples `lag` apart correlate at 0.7
    assert corr(path[:, 0], path[:, lag]) == pytest.approx(0.7, abs=0.02)
    assert corr(path[:, lag], path[:, 2 * lag]) == pytest.approx(0.7, abs=0.02)
    assert corr(path[:, 0], path[:, 2 * lag]) == pytest.approx(0.49, abs=0.02)
    assert s.ar_coefficient == pytest.approx(0.7 ** (sample_minutes / 15))
    assert corr(path[:, 0], path[:, 1]) == pytest.approx(s.ar_coefficient, abs=0.02)


@pytest.mark.parametrize("sample_minutes", [5, 1])
def test_simulator_advances_the_latent_at_the_sensor_period(sample_minutes):
    sim = GlucoseSimulator(sensor=CGMSensor(sample_minutes=sample_minutes))
    names = list(patient_table().names) * 200  # 6000 subjects at steady state
    state = sim.reset(subjects=names, seed=3)
    basal = sim.basal_u_per_min(state)
    action = torch.stack([basal, torch.zeros_like(basal)], dim=1)
    later = sim.step(state, action, 15.0)
    assert bool((later["cgm_sample"] == 15 // sample_minutes).all())
    assert corr(state["cgm_latent"], later["cgm_latent"]) == pytest.approx(0.7, abs=0.03)
    # the reading is the noise-free subcutaneous glucose plus the Johnson error, clipped
    reading = sim.observe(later)[:, 0]
    expected = (gsub_mg_dl(later) + sim.sensor.error_mg_dl(later["cgm_latent"])).clamp(39, 600)
    assert torch.equal(reading, expected)
    mean, sd = johnson_su_moments(sim.sensor)
    error = reading - gsub_mg_dl(later)
    assert float(error.mean()) == pytest.approx(mean, abs=5 * sd / math.sqrt(len(names)))


def test_readings_are_clipped_to_the_reporting_range():
    s = CGMSensor()
    gsub = torch.tensor([5.0, 30.0, 120.0, 590.0, 800.0], dtype=torch.float64)
    zero = torch.zeros_like(gsub)
    e0 = float(s.error_mg_dl(zero[:1])[0])  # error at the latent's median
    assert e0 == pytest.approx(-5.47 + 15.9574 * math.sinh(0.5444 / 1.6898))
    assert s.reading(gsub, zero).tolist() == pytest.approx(
        [39.0, 39.0, 120.0 + e0, 590.0 + e0, 600.0]
    )
    for latent in (-8.0, 8.0):
        extreme = s.reading(gsub, torch.full_like(gsub, latent))
        assert float(extreme.min()) >= 39.0 and float(extreme.max()) <= 600.0
    assert float(s.reading(gsub[2:3], torch.tensor([-8.0]))[0]) == 39.0
    assert float(s.reading(gsub[2:3], torch.tensor([8.0]))[0]) == 600.0
    narrow = CGMSensor(min_mg_dl=40.0, max_mg_dl=400.0)
    assert narrow.reading(gsub, zero).tolist()[::4] == [40.0, 400.0]


def cgm_trace(sim: GlucoseSimulator, names, seed: int, offset: int, minutes: int = 60):
    state = sim.reset(subjects=names, seed=seed, subject_offset=offset)
    basal = sim.basal_u_per_min(state)
    action = torch.stack([basal, torch.zeros_like(basal)], dim=1)
    readings = [sim.observe(state)[:, 0]]
    for _ in range(minutes // sim.sensor.sample_minutes):
        state = sim.step(state, action, float(sim.sensor.sample_minutes))
        readings.append(sim.observe(state)[:, 0])
    return torch.stack(readings, dim=1)


def test_each_subjects_noise_is_independent_of_the_batch_it_is_simulated_in():
    sim = GlucoseSimulator()
    names = ["adult#001", "adult#001", "child#004", "adolescent#009", "adult#007", "child#001"]
    together = cgm_trace(sim, names, seed=11, offset=0)
    for i in range(len(names)):
        alone = cgm_trace(sim, names[i : i + 1], seed=11, offset=i)
        assert torch.equal(together[i], alone[0]), names[i]
    pair = cgm_trace(sim, names[2:4], seed=11, offset=2)
    assert torch.equal(together[2:4], pair)
    # subjects 0 and 1 are the same patient but different subjects: different noise
    assert not torch.equal(together[0], together[1])
    # a different seed gives different noise for the same subject
    assert not torch.equal(cgm_trace(sim, names[:1], seed=12, offset=0)[0], together[0])


def test_sample_period_below_one_minute_is_refused():
    with pytest.raises(InvalidInputError, match="sample_minutes"):
        CGMSensor(sample_minutes=0)

"""Geng (2017) PK-PD equations and the virtual lung-cancer patient population."""

import math

import pytest
import torch

from biowm.domains.tumour.model import (
    CARRYING_CAPACITY_CM3,
    CHEMO_DOSE,
    DEATH_VOLUME_CM3,
    PatientParameters,
    chemo_concentration,
    next_volume,
    project,
    sphere_diameter_cm,
    sphere_volume_cm3,
)
from biowm.domains.tumour.patients import STAGE_COUNTS, STAGES, sample_patients

FIELDS = list(PatientParameters.__dataclass_fields__)


def one_patient(**overrides) -> PatientParameters:
    values = {"alpha": 0.04, "beta": 0.004, "beta_c": 0.028, "rho": 7e-3, "patient_type": 2,
              "stage": 3, "initial_volume_cm3": 10.0} | overrides
    return PatientParameters(**{k: torch.tensor([v], dtype=torch.long if k in
                                                ("patient_type", "stage") else torch.float64)
                                for k, v in values.items()})


# --- the model ----------------------------------------------------------------------------


def test_sphere_volume_and_diameter_round_trip():
    diameters = torch.tensor([0.3, 1.0, 2.5, 13.0, 30.0], dtype=torch.float64)
    volumes = sphere_volume_cm3(diameters)
    assert float(volumes[1]) == pytest.approx(math.pi / 6)
    torch.testing.assert_close(sphere_diameter_cm(volumes), diameters)
    assert float(sphere_diameter_cm(torch.tensor([-1.0], dtype=torch.float64))[0]) == 0.0


def test_death_volume_and_carrying_capacity():
    death, capacity = DEATH_VOLUME_CM3, CARRYING_CAPACITY_CM3
    assert death == pytest.approx(1150.35, abs=0.01)
    assert capacity == pytest.approx(4 / 3 * math.pi * 15.0**3)


def test_chemo_concentration_halves_per_day_and_adds_five_per_session():
    c = torch.tensor([8.0], dtype=torch.float64)
    none, given = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    assert float(chemo_concentration(c, none)[0]) == pytest.approx(4.0)
    assert float(chemo_concentration(c, given)[0]) == pytest.approx(4.0 + CHEMO_DOSE)
    assert CHEMO_DOSE == 5.0
    # three days without a session after one: 5, 2.5, 1.25, 0.625
    path, current = [], torch.zeros(1, dtype=torch.float64)
    for session in (1.0, 0.0, 0.0, 0.0):
        current = chemo_concentration(current, torch.tensor([session], dtype=torch.float64))
        path.append(float(current[0]))
    assert path == pytest.approx([5.0, 2.5, 1.25, 0.625])


def test_next_volume_grows_untreated_and_shrinks_under_radiotherapy():
    params = one_patient()
    volume = torch.tensor([10.0], dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    untreated = float(next_volume(volume, zero, zero, params, zero)[0])
    expected = 10.0 * (1 + 7e-3 * math.log(CARRYING_CAPACITY_CM3 / 10.0))
    assert untreated == pytest.approx(expected)
    assert untreated > 10.0
    radio = float(next_volume(volume, zero, torch.ones(1, dtype=torch.float64), params, zero)[0])
    # kill = alpha·2 + beta·4 = 0.08 + 0.016
    assert radio == pytest.approx(expected - 10.0 * 0.096)
    assert radio < 10.0
    chemo = float(next_volume(volume, torch.tensor([5.0], dtype=torch.float64), zero, params,
                              zero)[0])
    assert chemo == pytest.approx(expected - 10.0 * 0.028 * 5.0)
    # at the carrying capacity an untreated tumour stops growing; the noise is multiplicative
    at_k = torch.tensor([CARRYING_CAPACITY_CM3], dtype=torch.float64)
    assert float(next_volume(at_k, zero, zero, params, zero)[0]) == pytest.approx(
        CARRYING_CAPACITY_CM3)
    noisy = next_volume(volume, zero, zero, params, torch.tensor([0.01], dtype=torch.float64))
    assert float(noisy[0]) == pytest.approx(expected + 0.1)


def test_project_absorbs_death_and_recovery():
    params = PatientParameters(**{k: torch.cat([getattr(one_patient(rho=0.5), k),
                                                getattr(one_patient(alpha=2.0, beta=0.2), k)])
                                  for k in FIELDS})
    volume = torch.tensor([1000.0, 1.0], dtype=torch.float64)
    c = torch.zeros(2, dtype=torch.float64)
    plan = torch.zeros(2, 3, 2, dtype=torch.float64)
    plan[1, 0, 1] = 1.0  # radio kills more than everything: the bracket goes negative
    noise = torch.zeros(2, 3, dtype=torch.float64)
    free = project(volume, c, params, plan, noise)
    assert float(free[0, 0]) > DEATH_VOLUME_CM3 and float(free[1, 0]) < 0
    absorbing = project(volume, c, params, plan, noise, absorbing=True)
    assert torch.all(absorbing[0] == DEATH_VOLUME_CM3)
    assert torch.all(absorbing[1] == 0.0)


# --- the patients -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population():
    return sample_patients(60_000, seed=3)


def test_parameters_are_positive_and_beta_is_alpha_over_ten(population):
    p = population
    assert bool((p.alpha > 0).all()) and bool((p.rho > 0).all()) and bool((p.beta_c > 0).all())
    torch.testing.assert_close(p.beta, p.alpha / 10.0)
    assert set(p.patient_type.unique().tolist()) == {1, 2, 3}
    shares = torch.bincount(p.patient_type, minlength=4)[1:].double() / len(p.alpha)
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.float64),
                               atol=0.015, rtol=0)
    # type 3 is chemo-sensitive (+10 % of the mean beta_c), type 1 radio-sensitive
    by_type = [p.beta_c[p.patient_type == k].mean() for k in (1, 2, 3)]
    assert float(by_type[2] - by_type[1]) == pytest.approx(0.0028, abs=3e-4)
    assert float(by_type[0] - by_type[1]) == pytest.approx(0.0, abs=3e-4)


def test_stage_shares_follow_the_published_counts(population):
    shares = torch.bincount(population.stage, minlength=len(STAGES)).double() / len(
        population.stage)
    expected = STAGE_COUNTS / STAGE_COUNTS.sum()
    torch.testing.assert_close(shares, expected, atol=0.015, rtol=0)
    assert float(expected[4]) == pytest.approx(12840 / (1432 + 128 + 1306 + 7248 + 12840))


def test_initial_diameters_are_truncated_per_stage(population):
    diameter = sphere_diameter_cm(population.initial_volume_cm3)
    eps = 1e-9
    assert float(diameter.min()) >= 0.3 - eps and float(diameter.max()) <= 13.0 + eps
    stage_one = diameter[population.stage == 0]
    assert len(stage_one) > 1000
    assert float(stage_one.min()) >= 0.3 - eps and float(stage_one.max()) <= 5.0 + eps
    # the other stages do reach beyond stage I's upper bound
    assert float(diameter[population.stage == 4].max()) > 5.0


def test_a_patient_does_not_depend_on_the_batch_size():
    ten = sample_patients(10, seed=11)
    five = sample_patients(5, seed=11, offset=3)
    for name in FIELDS:
        torch.testing.assert_close(getattr(five, name), getattr(ten, name)[3:8], rtol=0, atol=0)
    other = sample_patients(10, seed=12)
    assert not torch.equal(other.alpha, ten.alpha)


def test_select_picks_rows_of_every_field():
    p = sample_patients(6, seed=0)
    index = torch.tensor([4, 1])
    chosen = p.select(index)
    for name in FIELDS:
        assert torch.equal(getattr(chosen, name), getattr(p, name)[index])

"""Controllers (basal-bolus, clinician behaviour policy), meal scenarios and the cohort engine."""

import csv
import math
from importlib import resources

import pytest
import torch

from biowm.domains.glucose.cohort import (
    MINUTES_PER_DAY,
    cohort_patients,
    simulate_cohort,
    simulate_shard,
)
from biowm.domains.glucose.controllers import BasalBolus, ClinicianPolicy
from biowm.domains.glucose.metrics import METRIC_NAMES, glycemic_metrics
from biowm.domains.glucose.pump import InsulinPump
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator

HALF_BASAL_STEP = 0.05 / 60 / 2  # half a 0.05 U/h pump increment, in U/min
HALF_BOLUS_STEP = 0.05 / 2
NAMES = ["adolescent#001", "adult#002", "adult#009", "child#010"]


def _data(name: str) -> dict[str, dict[str, str]]:
    text = resources.files("biowm.domains.glucose").joinpath("data", name).read_text()
    return {row["Name"]: row for row in csv.DictReader(text.splitlines())}


PARAMS, QUEST = _data("vpatient_params.csv"), _data("Quest.csv")


def by_hand(names, column, table=PARAMS):
    return torch.tensor([float(table[n][column]) for n in names], dtype=torch.float64)


def hand_basal(names):
    """u2ss (pmol/kg/min) · BW (kg) / 6000 (pmol/U) = U/min, from the published table."""
    return by_hand(names, "u2ss") * by_hand(names, "BW") / 6000.0


def setup(controller, names=NAMES):
    sim = GlucoseSimulator()
    state = sim.reset(subjects=names, seed=1)
    return sim, state, controller.reset(sim, state)


def act(controller, memory, cgm, carbs, minute):
    b = len(memory["carb_ratio"])
    full = lambda v: torch.full((b,), float(v), dtype=torch.float64)  # noqa: E731
    cgm = cgm if isinstance(cgm, torch.Tensor) else full(cgm)
    carbs = carbs if isinstance(carbs, torch.Tensor) else full(carbs)
    return controller.act(memory, cgm, carbs, full(minute))


# --- basal-bolus --------------------------------------------------------------------------


def test_basal_bolus_basal_is_u2ss_bw_over_6000_within_a_pump_increment():
    controller = BasalBolus()
    _, _, memory = setup(controller)
    rate, _ = act(controller, memory, 120.0, 0.0, 30)
    expected = hand_basal(NAMES)
    assert torch.all((rate - expected).abs() <= HALF_BASAL_STEP + 1e-12)
    per_hour_steps = rate * 60 / 0.05
    assert torch.allclose(per_hour_steps, per_hour_steps.round(), atol=1e-9)
    # no meal: no bolus, even far above target
    high, _ = act(controller, memory, 350.0, 0.0, 30)
    assert torch.equal(high, rate)


def test_basal_bolus_gives_carbs_over_cr_at_a_meal_plus_correction_above_150():
    controller = BasalBolus()
    _, _, memory = setup(controller)
    basal, _ = act(controller, memory, 120.0, 0.0, 420)
    cr, cf = by_hand(NAMES, "CR", QUEST), by_hand(NAMES, "CF", QUEST)
    cases = ((100.0, 0.0), (140.0, 0.0), (150.0, 0.0), (200.0, 60.0), (250.0, 110.0))
    for cgm, correction in cases:
        rate, _ = act(controller, memory, cgm, 60.0, 420)
        bolus = rate - basal  # U delivered within the minute
        expected = 60.0 / cr + correction / cf
        assert torch.all((bolus - expected).abs() <= HALF_BOLUS_STEP + 1e-9), cgm
        steps = bolus / 0.05
        assert torch.allclose(steps, steps.round(), atol=1e-9)


def test_pump_caps_a_bolus_at_30_u_and_rounds_to_increments():
    pump = InsulinPump()
    got = pump.bolus_u(torch.tensor([-1.0, 0.01, 0.03, 1.234, 500.0], dtype=torch.float64))
    assert got.tolist() == pytest.approx([0.0, 0.0, 0.05, 1.25, 30.0])


# --- clinician behaviour policy -----------------------------------------------------------

QUIET = dict(
    suspension_probability_per_day=0.0, correction_probability_per_hour=0.0,
    carb_estimate_log_sd=0.0, dose_log_sd=0.0, basal_log_sd=0.0,
)


def rates_over(controller, memory, meal_minute, carbs, minutes, cgm=120.0):
    out = []
    for minute in range(minutes):
        c = carbs if minute == meal_minute else 0.0
        rate, memory = act(controller, memory, cgm, c, minute)
        out.append(rate)
    return torch.stack(out, dim=1)


def test_clinician_without_errors_doses_like_basal_bolus():
    clinician = ClinicianPolicy(miss_probability=0.0, late_probability=0.0, **QUIET)
    _, _, memory = setup(clinician)
    _, _, bb_memory = setup(BasalBolus())
    assert torch.equal(
        rates_over(clinician, memory, 60, 55.0, 120, cgm=190.0),
        rates_over(BasalBolus(), bb_memory, 60, 55.0, 120, cgm=190.0),
    )


def test_clinician_who_always_misses_gives_no_bolus():
    clinician = ClinicianPolicy(
        miss_probability=1.0, suspension_probability_per_day=0.0,
        correction_probability_per_hour=0.0,
    )
    _, _, memory = setup(clinician)
    rates = rates_over(clinician, memory, 60, 70.0, 240)
    assert torch.equal(rates, rates[:, :1].expand_as(rates))  # basal only, every minute
    # the (mis-set) basal stays within 5 sd of the prescribed rate
    ratio = rates[:, 0] / hand_basal(NAMES)
    assert bool(((ratio > math.exp(-0.5)) & (ratio < math.exp(0.5))).all())


def test_clinician_who_is_always_late_boluses_once_15_to_60_minutes_later():
    names = [*NAMES, "adult#001", "child#003", "adolescent#005"]
    clinician = ClinicianPolicy(miss_probability=0.0, late_probability=1.0, **QUIET)
    _, _, memory = setup(clinician, names)
    rates = rates_over(clinician, memory, 60, 70.0, 240)
    basal = rates[:, 0]
    extra = rates - basal[:, None]
    assert torch.all(extra[:, :76].abs() < 1e-12)  # nothing at the meal (minute 60) up to minute 75
    assert torch.all(extra[:, 121:].abs() < 1e-12)  # nothing after 60 + 60 minutes
    given_at = (extra > 1e-9).sum(dim=1)
    assert given_at.tolist() == [1] * len(names)  # exactly one late bolus each
    dose = extra.sum(dim=1)
    expected = 70.0 / by_hand(names, "CR", QUEST)
    assert torch.all((dose - expected).abs() <= HALF_BOLUS_STEP + 1e-9)
    when = (extra > 1e-9).float().argmax(dim=1)
    assert len(set(when.tolist())) > 1  # the delay is drawn per subject


def test_clinician_suspension_zeroes_insulin_for_at_most_two_hours_of_one_day():
    clinician = ClinicianPolicy(
        miss_probability=1.0, suspension_probability_per_day=1.0,
        correction_probability_per_hour=0.0,
    )
    _, _, memory = setup(clinician)
    rates = rates_over(clinician, memory, -1, 0.0, MINUTES_PER_DAY)
    for row in rates:
        off = torch.nonzero(row == 0).flatten()
        assert 0 < len(off) <= 120
        assert int(off[-1] - off[0]) + 1 == len(off)  # one contiguous suspension
        assert float(row.max()) > 0


# --- meal scenarios -----------------------------------------------------------------------


def test_scenario_meals_lie_inside_their_windows_with_the_published_frequencies():
    schedule = MealSchedule()
    days, n = 3, 4000
    minute, carbs = schedule.sample(torch.arange(n) * 7919 + 13, days)
    assert minute.shape == carbs.shape == (n, 6 * days)
    occurs = torch.isfinite(minute)
    assert torch.equal(carbs > 0, occurs)
    assert bool((carbs[~occurs] == 0).all())
    for j in range(6 * days):
        day, slot = divmod(j, 6)
        times = minute[occurs[:, j], j] - day * 1440
        assert float(times.min()) >= schedule.earliest_h[slot] * 60
        assert float(times.max()) <= schedule.latest_h[slot] * 60
        assert bool((times == times.round()).all())
        frequency = float(occurs[:, j].double().mean())
        assert frequency == pytest.approx(schedule.probability[slot], abs=0.03)
        size = carbs[occurs[:, j], j]
        assert float(size.mean()) == pytest.approx(schedule.mean_carbs_g[slot], abs=1.0)
    # meals of one subject are in time order within a day
    finite_rows = occurs.all(dim=1)
    ordered = minute[finite_rows]
    assert bool((ordered[:, 1:] >= ordered[:, :-1]).all())


# --- cohort engine ------------------------------------------------------------------------

ADULTS = ["adult#001", "adult#002", "adult#003", "adult#004", "adult#005"]
SEED = 7


@pytest.fixture(scope="module")
def sim():
    return GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=1)


@pytest.fixture(scope="module")
def basal_bolus_log(sim):
    return simulate_shard(sim, BasalBolus(), ADULTS, 1, SEED)


def test_cohort_in_shards_of_2_equals_shards_of_5_exactly(sim, basal_bolus_log):
    class Collect:
        def __init__(self):
            self.batches = []

        def write(self, batch):
            self.batches.append(batch)

    # shard_size 5 simulates the 5 subjects as one batch: that is the fixture's log
    one = basal_bolus_log
    small = Collect()
    r2 = simulate_cohort(sim, BasalBolus(), ADULTS, 1, SEED, writer=small, shard_size=2)
    assert [len(b) for b in small.batches] == [2, 2, 1]
    ids = [i for b in small.batches for i in b.subject_ids]
    assert ids == one.subject_ids == [f"{p}/{i:06d}" for i, p in enumerate(ADULTS)]
    for field in ("times", "obs", "actions", "mask", "static"):
        assert torch.equal(torch.cat([getattr(b, field) for b in small.batches]),
                           getattr(one, field)), field
    whole = glycemic_metrics(one.obs[..., 1])
    assert r2.patients == ADULTS
    for name in METRIC_NAMES:
        assert torch.equal(r2.metrics[name], whole[name]), name


def test_cohort_log_layout_and_metrics_are_sane(sim, basal_bolus_log):
    log = basal_bolus_log
    assert log.obs.shape == (5, 288, 2) and log.actions.shape == (5, 288, 2)
    assert torch.equal(log.times[0], torch.arange(288, dtype=torch.float64) * 5)
    log.validate()
    assert bool(log.mask.all())
    cgm, bg = log.obs[..., 0], log.obs[..., 1]
    assert float(cgm.min()) >= 39.0 and float(cgm.max()) <= 600.0
    assert bool(torch.isfinite(bg).all()) and float(bg.min()) > 20.0
    # the CGM tracks plasma glucose (lagged, noisy): correlated and close on average
    assert float((cgm - bg).mean().abs()) < 10.0
    m = glycemic_metrics(bg)
    for name in METRIC_NAMES:
        assert bool(torch.isfinite(m[name]).all()), name
        assert bool((m[name] >= 0).all()), name
    assert torch.allclose(m["tir"] + m["tbr70"] + m["tar180"], torch.full((5,), 100.0).double())
    assert bool((m["mean_mg_dl"] > 70).all() & (m["mean_mg_dl"] < 250).all())
    # the static covariates are the subject's published characteristics
    assert log.static[:, 0].tolist() == pytest.approx(by_hand(ADULTS, "BW").tolist(), rel=1e-6)
    assert log.static[:, 2].tolist() == pytest.approx(by_hand(ADULTS, "CR", QUEST).tolist())


def test_logged_carbs_are_the_scenario_meals_and_meals_get_boluses(sim, basal_bolus_log):
    log = basal_bolus_log
    state = sim.reset(subjects=ADULTS, seed=SEED)
    basal = InsulinPump().basal_u_per_min(hand_basal(ADULTS))
    for i in range(len(ADULTS)):
        minutes = state["meal_minute"][i]
        grams = state["meal_carbs_g"][i]
        today = torch.isfinite(minutes) & (minutes < MINUTES_PER_DAY)
        assert today.sum() >= 1
        expected = torch.zeros(288, dtype=torch.float64)
        for minute, g in zip(minutes[today].tolist(), grams[today].tolist(), strict=True):
            expected[int(minute) // 5] += g
        assert torch.allclose(log.actions[i, :, 1].double(), expected), ADULTS[i]
        # insulin: basal between meals, above basal where a main meal (>= 20 g) starts
        insulin = log.actions[i, :, 0].double()
        quiet = expected == 0
        assert torch.allclose(insulin[quiet], basal[i].expand(int(quiet.sum())), atol=1e-6)
        assert bool((insulin[expected >= 20] > basal[i] + 1e-3).all())


def test_boluses_lower_glucose_compared_with_missing_them_all(sim, basal_bolus_log):
    no_boluses = ClinicianPolicy(miss_probability=1.0, **QUIET)
    missed = simulate_shard(sim, no_boluses, ADULTS, 1, SEED)
    # same subjects, same meals (same seed), insulin only added by the boluses
    assert torch.equal(missed.actions[..., 1], basal_bolus_log.actions[..., 1])
    bg_with, bg_without = basal_bolus_log.obs[..., 1], missed.obs[..., 1]
    assert bool((bg_with.mean(dim=1) < bg_without.mean(dim=1)).all())
    tir_with = ((bg_with >= 70) & (bg_with <= 180)).float().mean()
    tir_without = ((bg_without >= 70) & (bg_without <= 180)).float().mean()
    assert tir_with > tir_without
    # standard therapy keeps the adult virtual patients mostly in range
    assert float(tir_with) > 0.6


def test_cohort_patients_cycle_through_the_cohort(sim):
    assert cohort_patients(sim, "child", 12) == [f"child#{i:03d}" for i in range(1, 11)] + [
        "child#001", "child#002",
    ]
    assert cohort_patients(sim, "all", 3) == ["adolescent#001", "adolescent#002",
                                              "adolescent#003"]

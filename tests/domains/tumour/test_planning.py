"""Tumour planning: the validation domain and plan_and_evaluate with a perfect model."""

import math

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.world_model import Belief, Forecast
from biowm.domains.tumour.cohort import OBS_SPACE, simulate_cohort
from biowm.domains.tumour.model import PatientParameters, chemo_concentration, project
from biowm.domains.tumour.patients import sample_patients
from biowm.domains.tumour.planning import PlanSettings, ValidationDomain, plan_and_evaluate

FIELDS = list(PatientParameters.__dataclass_fields__)
EVERYWHERE = ValidationDomain((0.0, math.inf), {"chemotherapy": (0.0, math.inf),
                                                "radiotherapy": (0.0, math.inf)})


class TrueModel:
    """Knows each patient (from the subject id) and predicts the noise-free truth."""

    obs_space, step = OBS_SPACE, 1.0

    def __init__(self, seed: int):
        self.seed = seed

    def encode(self, history):
        end = history.lengths - 1
        rows = torch.arange(len(history))
        index = [int(s.split("#")[-1]) for s in history.subject_ids]
        concentration = torch.zeros(len(history), dtype=torch.float64)
        for t in range(int(end.max())):  # yesterday's concentration, as the cohort computes it
            given = torch.where(t < end, history.actions[:, t, 0].double(), 0.0)
            concentration = torch.where(t < end, chemo_concentration(concentration, given),
                                        concentration)
        params = [sample_patients(1, self.seed, i) for i in index]
        return Belief({"volume": history.obs[rows, end, 0].double(),
                       "concentration": concentration,
                       **{k: torch.cat([getattr(p, k) for p in params]) for k in FIELDS}})

    def imagine(self, belief, actions, n_samples=100, seed=0):
        t = belief.tensors
        params = PatientParameters(**{k: t[k] for k in FIELDS})
        path = project(t["volume"], t["concentration"], params, actions.double(),
                       torch.zeros(actions.shape[:2], dtype=torch.float64), absorbing=True)
        mean = path[..., None]
        times = torch.arange(1, actions.shape[1] + 1).double().expand(len(path), -1)
        return Forecast(samples=mean[None].expand(n_samples, -1, -1, -1), times=times,
                        space=OBS_SPACE, extras={"mean": mean})


SETTINGS = PlanSettings(gamma=2.0, seed=0, n_patients=40, start_day=20, horizon_days=6,
                        max_sessions=2)


def test_validation_domain_from_trajectories_check_and_save(tmp_path):
    cohort = simulate_cohort(200, 4.0, seed=1, days=30)
    data = cohort.to_trajectories()
    domain = ValidationDomain.from_trajectories(data)
    valid = torch.arange(30)[None, :] < cohort.length[:, None]
    assert domain.volume_cm3 == (float(cohort.volume[valid].min()),
                                 float(cohort.volume[valid].max()))
    chemo_given = valid & (cohort.chemo > 0.5)
    assert domain.treated_volume_cm3["chemotherapy"] == (
        float(cohort.volume[chemo_given].min()), float(cohort.volume[chemo_given].max()))
    # under confounding (γ = 4), neither treatment was logged at the smallest volumes
    smallest, largest = domain.volume_cm3
    assert all(low > smallest for low, _ in domain.treated_volume_cm3.values())
    probe = torch.tensor([domain.treated_volume_cm3["radiotherapy"][0], smallest, largest * 2],
                         dtype=torch.float64)
    inside, allowed, reasons = domain.check(probe)
    assert inside.tolist() == [True, True, False]
    assert bool(allowed[0, 1]) and allowed[1].tolist() == [False, False]
    assert not allowed[2].any()
    assert len(reasons) == 1 and "outside the trained range" in reasons[0]
    domain.save(tmp_path)
    assert ValidationDomain.load(tmp_path) == domain
    with pytest.raises(InvalidInputError, match="validation_domain.json"):
        ValidationDomain.load(tmp_path / "nowhere")


def test_a_perfect_model_plans_like_the_oracle():
    results = plan_and_evaluate(TrueModel(seed=0), EVERYWHERE, SETTINGS)
    assert results["n_schedules"] == (1 + 6 + 15) ** 2
    assert results["out_of_domain"] == 0
    assert results["treatment_not_allowed"] == {"chemotherapy": 0, "radiotherapy": 0}
    policies = results["policies"]
    assert policies["world_model_plan"] == policies["oracle_plan"]
    assert results["gap_to_oracle_cm3"] == 0.0
    assert policies["oracle_plan"]["mean_final_volume_cm3"] < (
        policies["no_treatment"]["mean_final_volume_cm3"])
    n = results["n_eligible"]
    assert len(results["plans"]["patient"]) == n and 0 < n <= 40
    schedules = torch.tensor(results["plans"]["schedule"])
    assert schedules.shape == (n, 6, 2)
    assert int(schedules.sum(1).max()) <= 2


def test_out_of_domain_patients_keep_the_clinicians_schedule():
    nowhere = ValidationDomain((1e9, 2e9), EVERYWHERE.treated_volume_cm3)
    results = plan_and_evaluate(TrueModel(seed=0), nowhere, SETTINGS)
    n = results["n_eligible"]
    assert results["out_of_domain"] == n
    assert len(results["out_of_domain_reasons"]) == min(n, 20)
    cohort = simulate_cohort(40, 2.0, 0, days=27, offset=3_000_000)
    eligible = torch.nonzero(cohort.length >= 27).flatten()
    clinician = torch.stack([cohort.chemo[eligible, 20:26], cohort.radio[eligible, 20:26]], 2)
    assert torch.equal(torch.tensor(results["plans"]["schedule"]), clinician.long())
    policies = results["policies"]
    assert policies["world_model_plan"]["mean_final_volume_cm3"] == pytest.approx(
        policies["clinician"]["mean_final_volume_cm3"], rel=1e-6)


def test_a_treatment_never_logged_is_not_planned():
    no_chemo = ValidationDomain((0.0, math.inf), {"chemotherapy": (math.nan, math.nan),
                                                  "radiotherapy": (0.0, math.inf)})
    results = plan_and_evaluate(TrueModel(seed=0), no_chemo, SETTINGS)
    schedules = torch.tensor(results["plans"]["schedule"])
    assert int(schedules[..., 0].sum()) == 0 and int(schedules[..., 1].sum()) > 0
    assert results["treatment_not_allowed"]["chemotherapy"] == results["n_eligible"]
    assert results["policies"]["world_model_plan"]["mean_sessions_chemo"] == 0.0


def test_no_eligible_patient_is_refused():
    # planning patient 0 of seed 38 recovers on day 18, before the planning window ends
    settings = PlanSettings(gamma=0.0, seed=38, n_patients=1, start_day=20, horizon_days=6)
    cohort = simulate_cohort(1, 0.0, 38, days=27, offset=3_000_000)
    assert bool(cohort.recovered[0]) and int(cohort.length[0]) < 27
    with pytest.raises(InvalidInputError, match="alive"):
        plan_and_evaluate(TrueModel(seed=38), EVERYWHERE, settings)

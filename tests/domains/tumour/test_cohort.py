"""The tumour data engine: valid volumes, treatment rates, confounding, replay in the simulator."""

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.domains.tumour.cohort import (
    MAX_DAYS,
    VAL_OFFSET,
    assignment_probability,
    simulate_cohort,
)
from biowm.domains.tumour.model import DEATH_VOLUME_CM3, sphere_diameter_cm
from biowm.domains.tumour.simulator import TumourSimulator


@pytest.fixture(scope="module")
def unconfounded():
    return simulate_cohort(3000, 0.0, seed=0)


@pytest.fixture(scope="module")
def confounded():
    return simulate_cohort(3000, 4.0, seed=0)


def valid_days(cohort):
    return torch.arange(cohort.volume.shape[1])[None, :] < cohort.length[:, None]


def decided_days(cohort):
    return torch.arange(cohort.volume.shape[1])[None, :] < (cohort.length - 1)[:, None]


@pytest.mark.parametrize("which", ["unconfounded", "confounded"])
def test_volumes_are_valid_until_each_patients_end_and_nan_after(request, which):
    cohort = request.getfixturevalue(which)
    assert cohort.volume.shape == (3000, MAX_DAYS)
    valid = valid_days(cohort)
    volumes = cohort.volume[valid]
    assert not torch.isnan(volumes).any()
    assert bool((volumes >= 0).all()) and bool((volumes <= DEATH_VOLUME_CM3).all())
    assert torch.isnan(cohort.volume[~valid]).all()
    assert bool((cohort.length >= 1).all()) and bool((cohort.length <= MAX_DAYS).all())
    # a trajectory ends early only by death or recovery (which may also fall on the last
    # day), never both
    finished = cohort.died | cohort.recovered
    assert bool(finished[cohort.length < MAX_DAYS].all())
    assert not (cohort.died & cohort.recovered).any()
    # no treatment decided after a patient's last day
    after = ~decided_days(cohort)
    assert float(cohort.chemo[after].abs().sum() + cohort.radio[after].abs().sum()) == 0.0
    assert float(cohort.probability[after].abs().sum()) == 0.0


def test_treatment_rate_is_one_half_without_confounding(unconfounded):
    assert unconfounded.treatment_rate() == pytest.approx(0.50, abs=0.02)
    decided = decided_days(unconfounded)
    torch.testing.assert_close(unconfounded.probability[decided],
                               torch.full_like(unconfounded.probability[decided], 0.5))


def test_confounded_clinician_treats_less_and_treats_larger_tumours(confounded):
    assert confounded.treatment_rate() == pytest.approx(0.18, abs=0.03)
    decided = decided_days(confounded)
    volume = confounded.volume[decided]
    probability = confounded.probability[decided]
    correlation = torch.corrcoef(torch.stack([volume, probability]))[0, 1]
    assert float(correlation) > 0.3
    diameter = sphere_diameter_cm(volume)
    treated = (confounded.chemo + confounded.radio)[decided] > 0
    assert float(diameter[treated].mean()) > 1.2 * float(diameter[~treated].mean())


def test_assignment_probability_is_the_published_sigmoid():
    d = torch.tensor([0.0, 6.5, 13.0], dtype=torch.float64)
    torch.testing.assert_close(assignment_probability(d, 0.0), torch.full_like(d, 0.5))
    p = assignment_probability(d, 4.0)
    assert float(p[1]) == pytest.approx(0.5)
    assert float(p[0]) == pytest.approx(1 / (1 + torch.e**2)) and float(p[2]) > 0.85


def test_the_first_window_uses_the_running_mean_diameter():
    cohort = simulate_cohort(50, 3.0, seed=5, days=20)
    diameter = sphere_diameter_cm(cohort.volume[:, :3])
    running = diameter.cumsum(1) / torch.arange(1, 4)
    alive = cohort.length >= 4
    expected = assignment_probability(running[alive], 3.0)
    torch.testing.assert_close(cohort.probability[alive, :3], expected)


def test_died_patients_end_at_the_death_volume_and_recovered_ones_at_zero(unconfounded):
    died, recovered = unconfounded.died, unconfounded.recovered
    assert int(died.sum()) >= 1 and int(recovered.sum()) >= 10
    rows = torch.arange(len(unconfounded))
    last = unconfounded.volume[rows, unconfounded.length - 1]
    assert bool((last[died] == DEATH_VOLUME_CM3).all())
    assert bool((last[recovered] == 0.0).all())
    survivors = ~died & ~recovered
    assert bool((last[survivors] > 0).all()) and bool((last[survivors] < DEATH_VOLUME_CM3).all())


def test_to_trajectories_is_valid_and_faithful(confounded):
    data = confounded.to_trajectories()
    data.validate()
    assert data.time_unit == "day"
    assert data.action_space.names == ["chemotherapy", "radiotherapy"]
    assert torch.equal(data.lengths, confounded.length)
    valid = valid_days(confounded)
    assert torch.equal(data.obs[..., 0][valid], confounded.volume[valid])
    assert torch.equal(data.mask[..., 0], valid)
    assert data.subject_ids[0] == "patient#000000"
    assert set(data.static[:, 0].tolist()) <= {1.0, 2.0, 3.0}
    shifted = simulate_cohort(2, 4.0, seed=0, offset=VAL_OFFSET, days=5).to_trajectories()
    assert shifted.subject_ids == [f"patient#{VAL_OFFSET:06d}", f"patient#{VAL_OFFSET + 1:06d}"]


def test_the_same_seed_gives_the_same_cohort_and_patients_are_batch_independent():
    a = simulate_cohort(20, 2.0, seed=4, days=30)
    b = simulate_cohort(20, 2.0, seed=4, days=30)
    assert torch.equal(a.chemo, b.chemo)
    torch.testing.assert_close(a.volume, b.volume, equal_nan=True, rtol=0, atol=0)
    tail = simulate_cohort(5, 2.0, seed=4, days=30, offset=15)
    torch.testing.assert_close(tail.volume, a.volume[15:], equal_nan=True, rtol=0, atol=0)
    c = simulate_cohort(20, 2.0, seed=5, days=30)
    assert not torch.equal(a.chemo, c.chemo)


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidInputError, match="gamma"):
        simulate_cohort(5, -1.0, seed=0)
    with pytest.raises(InvalidInputError, match="n >= 1"):
        simulate_cohort(0, 1.0, seed=0)
    with pytest.raises(InvalidInputError, match="days >= 2"):
        simulate_cohort(5, 1.0, seed=0, days=1)


def replay(simulator, state, cohort):
    volumes = [simulator.observe(state)[:, 0]]
    for t in range(cohort.volume.shape[1] - 1):
        action = torch.stack([cohort.chemo[:, t], cohort.radio[:, t]], dim=1)
        state = simulator.step(state, action)
        volumes.append(simulator.observe(state)[:, 0])
    return torch.stack(volumes, dim=1)


def test_the_simulator_replays_the_cohort_exactly():
    cohort = simulate_cohort(400, 2.0, seed=7, days=40)
    simulator = TumourSimulator()
    volumes = replay(simulator, simulator.reset(n=400, seed=7), cohort)
    valid = valid_days(cohort)
    assert torch.equal(volumes[valid], cohort.volume[valid])
    assert torch.equal(simulator.static(simulator.reset(n=400, seed=7))[:, 0],
                       cohort.params.patient_type.double())
    # absorbing: after death or recovery the simulator stays where the cohort ended
    rows = torch.arange(400)
    final = cohort.volume[rows, cohort.length - 1]
    ended = cohort.length < 40
    assert int(ended.sum()) >= 1
    assert torch.equal(volumes[ended, -1], final[ended])


def test_the_simulator_replays_named_patients():
    cohort = simulate_cohort(6, 1.0, seed=2, days=15, offset=VAL_OFFSET)
    simulator = TumourSimulator()
    state = simulator.reset(subjects=cohort.to_trajectories().subject_ids, seed=2)
    volumes = replay(simulator, state, cohort)
    valid = valid_days(cohort)
    assert torch.equal(volumes[valid], cohort.volume[valid])


def test_the_simulator_refuses_bad_input():
    simulator = TumourSimulator()
    state = simulator.reset(n=2, seed=0)
    with pytest.raises(InvalidInputError):
        simulator.step(state, torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(InvalidInputError, match="one day"):
        simulator.step(state, torch.zeros(2, 2), dt=0.5)
    with pytest.raises(InvalidInputError):
        simulator.reset()

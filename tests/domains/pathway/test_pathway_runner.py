"""The batched runner: reproducible populations, parallel = sequential, trajectory output."""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway import (
    draw_parameters,
    load_model,
    random_schedule,
    runner,
    shipped_drugs,
    simulate_population,
)


@pytest.fixture(scope="module")
def model():
    return load_model("kholodenko2000")


def population(model, n, seed, workers=1, sigma=0.1):
    draws = draw_parameters(model, n, sigma, seed=seed)
    schedule = random_schedule(shipped_drugs("kholodenko2000"), n, 3000.0, 6, seed)
    return simulate_population(model, np.linspace(0, 3000, 31), draws=draws,
                               schedule=schedule, observe=["MAPK_PP", "MKK_PP"],
                               workers=workers)


def test_draws_are_log_normal_around_the_model_and_keyed_by_cell(model):
    draws = draw_parameters(model, 2000, 0.2, seed=1)
    assert draws.names == tuple(model.parameters)  # all positive
    assert draws.log_ratio.std() == pytest.approx(0.2, rel=0.05)
    assert abs(draws.log_ratio.mean()) < 0.01
    assert np.allclose(draws.values(model)[:, 0], 2.5 * np.exp(draws.log_ratio[:, 0]))
    assert np.array_equal(draw_parameters(model, 10, 0.2, seed=1).log_ratio,
                          draws.log_ratio[:10])
    subset = draw_parameters(model, 10, 0.2, names=["k7", "V1"], seed=1)
    assert np.array_equal(subset.log_ratio[:, 1], draws.log_ratio[:10, 0])


def test_same_seed_same_population_other_seed_differs(model):
    a, b, c = population(model, 8, 0), population(model, 8, 0), population(model, 8, 1)
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.doses, b.doses)
    assert not np.allclose(a.obs, c.obs)
    assert not np.allclose(a.draws.log_ratio, c.draws.log_ratio)
    # different cells of one population differ too
    assert not np.allclose(a.obs[0], a.obs[1])


def test_parallel_and_sequential_runs_are_identical(model, monkeypatch):
    monkeypatch.setattr(runner, "MIN_RUNS_PER_WORKER", 1)  # two processes even for 70 runs
    used = []
    make = runner.make_executor
    monkeypatch.setattr(runner, "make_executor", lambda w: used.append(w) or make(w))
    sequential = population(model, 70, 5, workers=1)
    parallel = population(model, 70, 5, workers=2)
    assert used == [1, 2]
    assert not sequential.failed.any()
    assert np.array_equal(sequential.obs, parallel.obs)


def test_to_trajectories_carries_species_doses_and_draws(model):
    result = population(model, 4, 0)
    data = result.to_trajectories()
    data.validate()
    assert data.obs.shape == (4, 31, 2) and data.obs_space.names == ["MAPK_PP", "MKK_PP"]
    assert data.action_space.names == ["MEKi"] and data.action_space["MEKi"].unit == "nM"
    assert data.static.shape == (4, 22) and data.static_space.names[0] == "log_ratio_V1"
    assert np.allclose(data.static.numpy(), result.draws.log_ratio, atol=1e-6)
    assert data.time_unit == "second" and float(data.times[0, -1]) == 3000.0


def test_mismatched_population_sizes_are_refused(model):
    draws = draw_parameters(model, 3, seed=0)
    schedule = random_schedule(shipped_drugs("kholodenko2000"), 4, 100.0)
    with pytest.raises(InvalidInputError, match="3 parameter draws but 4 dose schedules"):
        simulate_population(model, [0.0, 100.0], draws=draws, schedule=schedule, workers=1)
    with pytest.raises(InvalidInputError, match="increasing"):
        simulate_population(model, [0.0, 5.0, 5.0], workers=1)

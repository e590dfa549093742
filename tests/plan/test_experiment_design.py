"""Closed-loop experiment design: strategies, the loop and the comparison with random."""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.plan.experiment_design import (
    LoopDesign,
    RoundResult,
    acquisition_scores,
    compare_strategies,
    experiments_to_reach,
    run_loop,
)

CANDIDATES = [f"c{i}" for i in range(40)]
IMPORTANT = set(CANDIDATES[::5])  # 8 candidates hold all the error


def _fit_round(run, seed):
    """A toy model: unmeasured important candidates cost 1 each and its ensemble disagrees
    on exactly those (the others it already knows)."""
    missing = IMPORTANT - set(run)

    def predict(candidates):
        rng = np.random.default_rng(seed)
        spread = np.array([1.0 if c in IMPORTANT else 0.01 for c in candidates])
        members = rng.normal(size=(4, len(candidates), 3)) * spread[None, :, None]
        return members, np.zeros_like(members)

    return RoundResult(float(len(missing)), predict)


def test_uncertainty_finds_what_the_ensemble_disagrees_on_before_random():
    design = LoopDesign("uncertainty", rounds=4, batch=4, seed=0)
    curve = run_loop(CANDIDATES, _fit_round, design)
    assert curve["experiments"] == [0, 4, 8, 12, 16]
    assert curve["error"][:3] == [8.0, 4.0, 0.0]
    assert set(curve["run"][:8]) == IMPORTANT
    result = compare_strategies(CANDIDATES, _fit_round, ["uncertainty"], 4, 4, [0, 1])
    for seed in result["seeds"]:
        assert seed["experiments_needed"]["uncertainty"] <= 8
        assert seed["random_experiments"] == 16
    assert result["worst_fraction"]["uncertainty"] <= 0.5


def test_random_runs_distinct_candidates_and_is_seeded():
    first = run_loop(CANDIDATES, _fit_round, LoopDesign("random", 5, 8, seed=3))
    again = run_loop(CANDIDATES, _fit_round, LoopDesign("random", 5, 8, seed=3))
    other = run_loop(CANDIDATES, _fit_round, LoopDesign("random", 5, 8, seed=4))
    assert first["run"] == again["run"] != other["run"]
    assert sorted(first["run"]) == sorted(CANDIDATES)  # 5 × 8 = all 40, each once


def test_interaction_score_adds_departure_from_reference_to_variance():
    members = np.zeros((3, 2, 2))
    members[:, 1] = 2.0  # candidate 1 departs by 2 on both outputs, no disagreement
    reference = np.zeros_like(members)
    assert acquisition_scores(members, reference, "uncertainty").tolist() == [0.0, 0.0]
    assert acquisition_scores(members, reference, "interaction").tolist() == [0.0, 8.0]


def test_experiments_to_reach_and_refusals():
    curve = {"experiments": [0, 10, 20], "error": [3.0, 2.0, 1.0]}
    assert experiments_to_reach(curve, 2.0) == 10
    assert experiments_to_reach(curve, 0.5) is None
    with pytest.raises(InvalidInputError, match="strategy must be one of"):
        LoopDesign("greedy")
    with pytest.raises(InvalidInputError, match="rounds and batch"):
        LoopDesign("random", rounds=0)
    with pytest.raises(InvalidInputError, match="compare with random"):
        compare_strategies(CANDIDATES, _fit_round, ["random"], 1, 1, [0])

"""Glycaemic metrics checked against values computed by hand.

Kovatchev risk: f(BG) = 1.509·(ln(BG)^1.084 − 5.381), r = 10·f²; LBGI averages r over
readings with f < 0 (0 elsewhere), HBGI over readings with f > 0. Reference values below
were computed with a calculator from that formula, independently of biowm.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from biowm.domains.glucose.metrics import (
    METRIC_NAMES,
    glycemic_metrics,
    risk_function,
    risk_index,
)

# BG (mg/dL) -> Kovatchev risk r = 10 f^2, by hand.
HAND_RISK = {40.0: 36.4175, 54.0: 18.4614, 70.0: 7.7552, 180.0: 7.7293, 250.0: 22.4362,
             400.0: 57.0461}


def kovatchev_f(bg: float) -> float:
    return 1.509 * (math.log(bg) ** 1.084 - 5.381)


def one(values, mask=None):
    bg = torch.tensor([values], dtype=torch.float64)
    m = None if mask is None else torch.tensor([mask])
    return {k: float(v[0]) for k, v in glycemic_metrics(bg, m).items()}


def test_all_metric_names_are_returned_one_value_per_subject():
    out = glycemic_metrics(torch.full((3, 7), 120.0))
    assert tuple(out) == METRIC_NAMES
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in out.values())


def test_range_boundaries_70_and_180_are_in_range_54_and_250_are_not_beyond():
    readings = [54.0, 69.9, 70.0, 180.0, 180.1, 250.0, 250.1, 53.9, 100.0, 120.0]
    m = one(readings)
    # in range 70 <= BG <= 180: 70, 180, 100, 120
    assert m["tir"] == pytest.approx(40.0)
    # below 70: 54, 69.9, 53.9; below 54: only 53.9 (54 itself is not below 54)
    assert m["tbr70"] == pytest.approx(30.0)
    assert m["tbr54"] == pytest.approx(10.0)
    # above 180: 180.1, 250, 250.1; above 250: only 250.1
    assert m["tar180"] == pytest.approx(30.0)
    assert m["tar250"] == pytest.approx(10.0)
    assert m["tir"] + m["tbr70"] + m["tar180"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("value", "tir", "tbr70", "tbr54", "tar180", "tar250"),
    [
        (53.999, 0, 100, 100, 0, 0),
        (54.0, 0, 100, 0, 0, 0),
        (69.999, 0, 100, 0, 0, 0),
        (70.0, 100, 0, 0, 0, 0),
        (180.0, 100, 0, 0, 0, 0),
        (180.001, 0, 0, 0, 100, 0),
        (250.0, 0, 0, 0, 100, 0),
        (250.001, 0, 0, 0, 100, 100),
    ],
)
def test_each_boundary_value_lands_in_the_right_range(value, tir, tbr70, tbr54, tar180, tar250):
    m = one([value] * 4)
    assert (m["tir"], m["tbr70"], m["tbr54"], m["tar180"], m["tar250"]) == (
        tir, tbr70, tbr54, tar180, tar250,
    )


def test_mean_and_cv_use_the_sample_standard_deviation():
    m = one([100.0, 150.0, 200.0])
    assert m["mean_mg_dl"] == pytest.approx(150.0)
    # sd with n-1: sqrt((50^2 + 0 + 50^2) / 2) = 50, CV = 50/150
    assert m["cv"] == pytest.approx(100.0 / 3.0)
    flat = one([123.0] * 10)
    assert flat["cv"] == pytest.approx(0.0, abs=1e-12)
    assert flat["mean_mg_dl"] == pytest.approx(123.0)


def test_risk_function_is_zero_near_112_5_and_matches_hand_values():
    assert abs(float(risk_function(torch.tensor(112.5, dtype=torch.float64)))) < 1e-3
    bg = torch.tensor(list(HAND_RISK), dtype=torch.float64)
    r = risk_index(bg)
    for value, expected in zip(HAND_RISK.values(), r.tolist(), strict=True):
        assert expected == pytest.approx(value, abs=1e-3)
    f = risk_function(bg)
    assert bool((f[bg < 112.5] < 0).all()) and bool((f[bg > 112.5] > 0).all())
    # the scale is (nearly) symmetric: 70 and 180 mg/dL carry about the same risk
    assert float(r[2]) == pytest.approx(float(r[3]), abs=0.05)


def test_lbgi_and_hbgi_match_hand_computation():
    m = one([40.0, 112.5, 250.0, 400.0])
    assert m["lbgi"] == pytest.approx(36.4175 / 4, abs=1e-3)
    # 112.5 has f slightly below 0 (r < 1e-6): it counts towards LBGI, negligibly
    assert m["hbgi"] == pytest.approx((22.4362 + 57.0461) / 4, abs=1e-3)
    only_low = one([40.0, 54.0, 70.0])
    assert only_low["hbgi"] == 0.0
    assert only_low["lbgi"] == pytest.approx((36.4175 + 18.4614 + 7.7552) / 3, abs=1e-3)
    only_high = one([180.0, 250.0])
    assert only_high["lbgi"] == 0.0
    assert only_high["hbgi"] == pytest.approx((7.7293 + 22.4362) / 2, abs=1e-3)


def test_masked_readings_are_ignored_even_when_nan():
    kept = one([100.0, 150.0])
    masked = one([100.0, float("nan"), 30.0, 150.0, 400.0], [True, False, False, True, False])
    for name in METRIC_NAMES:
        assert math.isfinite(masked[name]), name
        assert masked[name] == pytest.approx(kept[name], rel=1e-12, abs=1e-12), name
    assert masked["mean_mg_dl"] == pytest.approx(125.0)
    assert masked["cv"] == pytest.approx(100.0 * math.sqrt(1250.0) / 125.0)
    assert masked["tbr70"] == 0.0 and masked["tar180"] == 0.0 and masked["tir"] == 100.0
    r100 = 10 * kovatchev_f(100.0) ** 2
    r150 = 10 * kovatchev_f(150.0) ** 2
    assert masked["lbgi"] == pytest.approx(r100 / 2)
    assert masked["hbgi"] == pytest.approx(r150 / 2)


def test_subjects_are_independent_and_masks_give_different_lengths():
    bg = torch.tensor([[60.0, 200.0, 120.0, 120.0], [120.0, 120.0, 300.0, 50.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    both = glycemic_metrics(bg, mask)
    first = glycemic_metrics(bg[:1])
    second = glycemic_metrics(bg[1:, :2])
    for name in METRIC_NAMES:
        assert float(both[name][0]) == pytest.approx(float(first[name][0])), name
        assert float(both[name][1]) == pytest.approx(float(second[name][0])), name
    assert float(both["tir"][0]) == pytest.approx(50.0)
    assert float(both["tir"][1]) == pytest.approx(100.0)


def reference_metrics(values: list[float], valid: list[bool]) -> dict[str, float]:
    """Plain-Python consensus metrics, written from the definitions."""
    xs = [v for v, ok in zip(values, valid, strict=True) if ok]
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    fs = [kovatchev_f(x) for x in xs]
    return {
        "tir": 100 * sum(70 <= x <= 180 for x in xs) / n,
        "tbr70": 100 * sum(x < 70 for x in xs) / n,
        "tbr54": 100 * sum(x < 54 for x in xs) / n,
        "tar180": 100 * sum(x > 180 for x in xs) / n,
        "tar250": 100 * sum(x > 250 for x in xs) / n,
        "mean_mg_dl": mean,
        "cv": 100 * sd / mean,
        "lbgi": sum(10 * f * f for f in fs if f < 0) / n,
        "hbgi": sum(10 * f * f for f in fs if f > 0) / n,
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(20.0, 600.0, allow_nan=False), st.booleans()),
        min_size=1, max_size=40,
    ).filter(lambda rows: any(ok for _, ok in rows))
)
def test_metrics_agree_with_a_plain_python_reference(rows):
    values = [v for v, _ in rows]
    valid = [ok for _, ok in rows]
    got = one(values, valid)
    expected = reference_metrics(values, valid)
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-9), name
    assert got["tbr54"] <= got["tbr70"] and got["tar250"] <= got["tar180"]

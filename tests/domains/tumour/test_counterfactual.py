"""Counterfactual test sets (CRN / Causal Transformer protocol) from a simulated cohort."""

import pytest
import torch

from biowm.domains.tumour.cohort import simulate_cohort
from biowm.domains.tumour.counterfactual import (
    ONE_STEP_OPTIONS,
    one_step_counterfactuals,
    sliding_counterfactuals,
    sliding_sequences,
)
from biowm.domains.tumour.model import chemo_concentration, next_volume


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(300, 2.0, seed=1, days=40)


@pytest.fixture(scope="module")
def one_step(cohort):
    return one_step_counterfactuals(cohort)


def test_one_step_set_has_four_options_at_every_origin_with_a_next_day(cohort, one_step):
    n = len(one_step)
    assert n == int((cohort.length - 1).sum())
    assert one_step.actions.shape == (n, 4, 1, 2)
    assert one_step.outcomes.shape == (n, 4, 1)
    assert one_step.scored_steps == (1,)
    for k in range(4):
        assert torch.equal(one_step.actions[:, k, 0], ONE_STEP_OPTIONS[k].expand(n, 2))
    assert bool((one_step.origin + 1 < cohort.length[one_step.subject]).all())
    assert not torch.isnan(cohort.volume[one_step.subject, one_step.origin + 1]).any()
    assert not torch.isnan(one_step.outcomes).any()


def test_one_step_factual_option_keeps_the_logged_outcome(cohort, one_step):
    s, t = one_step.subject, one_step.origin
    factual = torch.stack([cohort.chemo[s, t], cohort.radio[s, t]], dim=1)
    is_factual = (one_step.actions[:, :, 0] == factual[:, None, :]).all(dim=2)  # [N, 4]
    assert torch.equal(is_factual.sum(1), torch.ones(len(s), dtype=torch.long))
    assert torch.equal(one_step.outcomes[..., 0][is_factual], cohort.volume[s, t + 1])
    # every option occurs as the factual one somewhere (γ = 2 treats some patients)
    assert bool(is_factual.any(0).all())


def test_one_step_untreated_option_uses_the_factual_noise(cohort, one_step):
    s, t = one_step.subject, one_step.origin
    previous = torch.where(t > 0, cohort.concentration[s, (t - 1).clamp(min=0)], 0.0)
    zero = torch.zeros(len(s), dtype=torch.float64)
    untreated = next_volume(cohort.volume[s, t], chemo_concentration(previous, zero), zero,
                            cohort.params.select(s), cohort.noise[s, t + 1])
    treated_today = (cohort.chemo[s, t] + cohort.radio[s, t]) > 0
    assert int(treated_today.sum()) > 100
    torch.testing.assert_close(one_step.outcomes[treated_today, 0, 0], untreated[treated_today],
                               rtol=1e-12, atol=0)
    # where the logged day was untreated, the logged (clamped) outcome is kept; away from
    # death and recovery it is the same value
    same = ~treated_today & (cohort.volume[s, t + 1] > 0) & (untreated < 1000)
    torch.testing.assert_close(one_step.outcomes[same, 0, 0], untreated[same], rtol=1e-12, atol=0)
    # and radiotherapy does shrink relative to no treatment (same noise)
    assert bool((one_step.outcomes[:, 2, 0] < one_step.outcomes[:, 0, 0]).all())


def test_sliding_sequences_have_one_session_each():
    seq = sliding_sequences(5)
    assert seq.shape == (10, 5, 2)
    assert torch.equal(seq.sum(dim=(1, 2)), torch.ones(10, dtype=torch.float64))
    assert bool((seq[:5, :, 1] == 0).all()) and bool((seq[5:, :, 0] == 0).all())
    assert torch.equal(seq[:5, :, 0], torch.eye(5, dtype=torch.float64))
    assert len({tuple(s.flatten().tolist()) for s in seq}) == 10
    assert sliding_sequences(3).shape == (6, 3, 2)


def test_sliding_set_layout(cohort):
    cf = sliding_counterfactuals(cohort, horizon=5)
    n = len(cf)
    assert cf.scored_steps == (2, 3, 4, 5, 6)
    assert cf.actions.shape == (n, 10, 6, 2) and cf.outcomes.shape == (n, 10, 6)
    assert n + cf.dropped == int((cohort.length - 1).sum())
    s, t = cf.subject, cf.origin
    factual = torch.stack([cohort.chemo[s, t], cohort.radio[s, t]], dim=1)
    assert torch.equal(cf.actions[:, :, 0], factual[:, None, :].expand(-1, 10, -1))
    assert torch.equal(cf.actions[:, :, 1:], sliding_sequences(5)[None].expand(n, -1, -1, -1))
    assert torch.equal(cf.outcomes[:, :, 0], cohort.volume[s, t + 1][:, None].expand(-1, 10))
    assert bool((cf.outcomes >= 0).all()) and not torch.isnan(cf.outcomes).any()


def test_sliding_outcomes_equal_the_log_where_the_log_followed_the_sequence():
    cohort = simulate_cohort(2500, 0.0, seed=3, days=30)
    cf = sliding_counterfactuals(cohort, horizon=5)
    s, t = cf.subject, cf.origin
    days = t[:, None] + 1 + torch.arange(5)[None, :]  # t+1 … t+5
    inside = days < cohort.volume.shape[1]
    logged = torch.stack([cohort.chemo[s[:, None], days.clamp(max=29)],
                          cohort.radio[s[:, None], days.clamp(max=29)]], dim=2)  # [N, 5, 2]
    followed = (logged[:, None] == sliding_sequences(5)[None]).all(dim=(2, 3))  # [N, 10]
    # alive through day t+6 with no death or recovery on it: day t+7 exists
    alive = (t + 7 < cohort.length[s]) & inside.all(1)
    row, k = torch.nonzero(followed & alive[:, None], as_tuple=True)
    assert len(row) >= 5
    truth = cohort.volume[s[row, None], t[row, None] + 1 + torch.arange(6)[None, :]]
    torch.testing.assert_close(cf.outcomes[row, k], truth, rtol=1e-12, atol=0)
    # the other sequences from those origins predict something else
    other = (k + 1) % 10
    assert not torch.allclose(cf.outcomes[row, other, 2:], truth[:, 2:])


def test_sliding_needs_noise_beyond_the_horizon():
    short = simulate_cohort(5, 1.0, seed=0, days=10, extra_noise_days=2)
    with pytest.raises(ValueError, match="noise"):
        sliding_counterfactuals(short, horizon=5)
    assert len(sliding_counterfactuals(short, horizon=1)) > 0

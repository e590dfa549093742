import torch

from biowm.core import random as crandom


def test_draws_depend_only_on_subject_not_batch():
    all_keys = crandom.subject_keys(seed=5, n=100)
    tail_keys = crandom.subject_keys(seed=5, n=40, offset=60)
    assert torch.equal(all_keys[60:], tail_keys)
    assert torch.equal(crandom.normal(all_keys, 3, 17)[60:], crandom.normal(tail_keys, 3, 17))


def test_seeds_streams_and_counters_are_distinct():
    keys = crandom.subject_keys(seed=1, n=1000)
    assert len(set(keys.tolist())) == 1000
    a = crandom.uniform(keys, 1, 0)
    assert not torch.equal(a, crandom.uniform(keys, 2, 0))
    assert not torch.equal(a, crandom.uniform(keys, 1, 1))
    assert not torch.equal(keys, crandom.subject_keys(seed=2, n=1000))


def test_distribution_moments():
    keys = crandom.subject_keys(seed=0, n=20000)
    u = crandom.uniform(keys, 0, 0)
    z = crandom.normal(keys, 0, 0)
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1.0) < 0.03


def test_grid_counters_give_one_draw_per_subject_and_event():
    keys = crandom.subject_keys(seed=0, n=3)
    grid = crandom.uniform(keys, 0, torch.arange(4)[None, :])
    assert grid.shape == (3, 4)
    assert torch.equal(grid[:, 2], crandom.uniform(keys, 0, 2))

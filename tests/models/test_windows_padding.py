"""`pad_left` and the direct baselines' `pad_history` option (histories from day 0)."""

import pytest
import torch
from synthetic import STEP, linear_system

from biowm.core.errors import InvalidInputError
from biowm.models import load_world_model
from biowm.models.linear import LinearARX
from biowm.models.windows import make_windows, pad_left


def test_pad_left_adds_unobserved_steps_with_extrapolated_times():
    data = linear_system(3, 6, seed=0)
    data.times[2, 4:] = torch.nan  # a shorter subject, end-padded
    padded = pad_left(data, 4, STEP)
    assert padded.times.shape == (3, 10)
    torch.testing.assert_close(padded.times[0, :4],
                               torch.tensor([-20.0, -15.0, -10.0, -5.0], dtype=torch.float64))
    torch.testing.assert_close(padded.times[:, 4:], data.times, equal_nan=True)
    assert not padded.mask[:, :4].any()
    assert torch.equal(padded.mask[:, 4:], data.mask)
    assert float(padded.obs[:, :4].abs().sum()) == 0.0
    assert float(padded.actions[:, :4].abs().sum()) == 0.0
    torch.testing.assert_close(padded.obs[:, 4:], data.obs, equal_nan=True)
    assert torch.equal(padded.actions[:, 4:], data.actions)
    assert torch.equal(padded.lengths, data.lengths + 4)
    assert padded.subject_ids == data.subject_ids and torch.equal(padded.static, data.static)
    padded.validate()
    # times follow each subject's own start
    shifted = linear_system(1, 3, seed=0)
    shifted.times = shifted.times + 100.0
    torch.testing.assert_close(pad_left(shifted, 2, 1.0).times[0, :3],
                               torch.tensor([98.0, 99.0, 100.0], dtype=torch.float64))
    assert pad_left(data, 0, STEP) is data


def test_padding_gives_windows_from_the_first_point():
    data = linear_system(2, 8, seed=1)
    plain = make_windows(data, 5, 3)
    padded = make_windows(pad_left(data, 4, STEP), 5, 3)
    assert len(plain) == 2 * 1 and len(padded) == 2 * 5
    # the earliest padded window starts at day 0 with four unobserved history points
    first = padded.select(torch.tensor([0]))
    assert int(first.origin_index[0]) == 4
    assert not first.history.mask[0, :4].any() and bool(first.history.mask[0, 4, 0])
    torch.testing.assert_close(first.future_obs[0], data.obs[0, 1:4], equal_nan=True)


@pytest.fixture(scope="module")
def short():
    """Trajectories of 6 points: too short for 5 history + 3 horizon steps unpadded."""
    return {"train": linear_system(20, 6, seed=2, missing=0.0),
            "val": linear_system(8, 6, seed=3, missing=0.0)}


@pytest.fixture(scope="module")
def padded_model(short):
    model = LinearARX(history_steps=5, horizon_steps=3, stride=1, pad_history=True)
    model.fit(short["train"], short["val"])
    return model


def test_pad_history_fits_on_short_trajectories(short, padded_model):
    assert padded_model.data_summary["n_train_windows"] == 20 * 3  # origins on days 0, 1, 2
    with pytest.raises(InvalidInputError, match="6 time points"):
        LinearARX(history_steps=5, horizon_steps=3, stride=1).fit(short["train"], short["val"])


def test_pad_history_encodes_a_one_point_history(short, padded_model):
    one = short["val"].select([0, 1])
    one.times[:, 1:] = torch.nan
    belief = padded_model.encode(one)
    forecast = padded_model.imagine(belief, torch.ones(2, 3, 1), n_samples=4)
    assert forecast.extras["mean"].shape == (2, 3, 2)
    assert torch.isfinite(forecast.extras["mean"]).all()
    # the same as encoding the explicitly padded history
    explicit = padded_model.encode(pad_left(one, 4, STEP))
    for key in belief.tensors:
        torch.testing.assert_close(belief.tensors[key], explicit.tensors[key])
    # the forecast responds to the first dose as the system does (x' = 0.9x + 2u + …)
    none = padded_model.imagine(belief, torch.zeros(2, 3, 1), n_samples=4)
    gain = forecast.extras["mean"][:, 0, 0] - none.extras["mean"][:, 0, 0]
    assert bool((gain > 1.0).all()) and bool((gain < 3.0).all())


def test_without_padding_a_short_history_is_refused(short):
    long = linear_system(10, 30, seed=4)
    model = LinearARX(history_steps=5, horizon_steps=3, stride=2, pad_history=False)
    model.fit(long, linear_system(4, 30, seed=5))
    one = long.select([0])
    one.times[:, 1:] = torch.nan
    with pytest.raises(InvalidInputError, match="history_steps"):
        model.encode(one)


def test_pad_history_survives_save_and_load(padded_model, short, tmp_path):
    padded_model.save(tmp_path / "m")
    loaded = load_world_model(tmp_path / "m")
    assert isinstance(loaded, LinearARX) and loaded.pad_history
    one = short["val"].select([2])
    one.times[:, 2:] = torch.nan
    a = padded_model.imagine(padded_model.encode(one), torch.zeros(1, 3, 1), 8, seed=1)
    b = loaded.imagine(loaded.encode(one), torch.zeros(1, 3, 1), 8, seed=1)
    assert torch.equal(a.samples, b.samples)

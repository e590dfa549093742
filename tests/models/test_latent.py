"""Latent sequence world model and deep ensemble on a linear system with known dynamics."""

import json

import pytest
import torch
from synthetic import linear_system

from biowm.core.errors import InvalidInputError
from biowm.core.world_model import WorldModel
from biowm.models import load_world_model
from biowm.models.ensemble import DeepEnsemble
from biowm.models.latent import LatentWorldModel
from biowm.models.linear import LinearARX
from biowm.models.persistence import Persistence
from biowm.models.training import TrainConfig

H = 8
SETTINGS = {"history_steps": 8, "horizon_steps": H, "stride": 2, "latent_dim": 16,
            "hidden_dim": 32}
TRAIN = {"max_epochs": 12, "batch_size": 64, "learning_rate": 5e-3, "progress": False}


@pytest.fixture(scope="module")
def data():
    return {"train": linear_system(24, 120, seed=1), "val": linear_system(8, 120, seed=2),
            "test": linear_system(8, 120, seed=3)}


@pytest.fixture(scope="module")
def ensemble(data):
    model = DeepEnsemble(members=2, **SETTINGS)
    model.fit(data["train"], data["val"], **TRAIN)
    return model


def rmse(model, windows) -> float:
    forecast = model.imagine(model.encode(windows.history), windows.future_actions, 100)
    error = torch.where(windows.future_mask, forecast.mean() - windows.future_obs, 0.0)
    return float((error**2).sum() / windows.future_mask.sum()) ** 0.5


def test_ensemble_learns_the_dynamics_and_beats_persistence(ensemble, data):
    assert isinstance(ensemble, WorldModel)
    windows = ensemble.members[0].windows(data["test"], stride=4)
    persistence = Persistence(history_steps=8, horizon_steps=H, stride=2)
    persistence.fit(data["train"], data["val"])
    assert rmse(ensemble, windows) < 0.6 * rmse(persistence, windows)
    linear = LinearARX(history_steps=8, horizon_steps=H, stride=2)
    linear.fit(data["train"], data["val"])
    assert rmse(ensemble, windows) < 2.0 * rmse(linear, windows)  # the true model is linear


def test_calibrated_intervals_cover_about_90_percent(ensemble, data):
    windows = ensemble.members[0].windows(data["test"], stride=4)
    forecast = ensemble.imagine(ensemble.encode(windows.history), windows.future_actions, 400)
    low, high = forecast.interval(0.9)
    inside = (windows.future_obs >= low) & (windows.future_obs <= high)
    coverage = float(inside[windows.future_mask].float().mean())
    assert 0.8 <= coverage <= 0.98
    assert forecast.extras["member_means"].shape[0] == 2


def test_more_dose_raises_x(ensemble, data):
    windows = ensemble.members[0].windows(data["test"], stride=8)
    belief = ensemble.encode(windows.history)
    low = ensemble.imagine(belief, torch.zeros_like(windows.future_actions)).mean()
    high = ensemble.imagine(belief, torch.ones_like(windows.future_actions)).mean()
    assert float((high - low)[:, -1, 0].mean()) > 5.0  # true effect: 2·Σ0.9^k ≈ 11.4


def test_save_load_round_trip_gives_identical_forecasts(ensemble, data, tmp_path):
    windows = ensemble.members[0].windows(data["test"], stride=8)
    ensemble.save(tmp_path / "model")
    loaded = load_world_model(tmp_path / "model")
    assert isinstance(loaded, DeepEnsemble)
    a = ensemble.imagine(ensemble.encode(windows.history), windows.future_actions, 50, seed=3)
    b = loaded.imagine(loaded.encode(windows.history), windows.future_actions, 50, seed=3)
    assert torch.equal(a.samples, b.samples)
    card = (tmp_path / "model" / "card.md").read_text()
    assert "Validation domain" in card and "training_data_sha256" not in card
    assert "sha256" in card and "Limitations" in card


def test_corrupted_or_future_model_is_refused(ensemble, tmp_path):
    ensemble.save(tmp_path / "m")
    weights = tmp_path / "m" / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError, match="does not match manifest"):
        load_world_model(tmp_path / "m")
    ensemble.save(tmp_path / "n")
    config = json.loads((tmp_path / "n" / "config.json").read_text())
    config["format_version"] = 7
    (tmp_path / "n" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInputError, match="format version 7"):
        load_world_model(tmp_path / "n")


def test_training_resumes_from_a_checkpoint_to_the_same_result(data, tmp_path):
    def train(epochs: int, checkpoint) -> LatentWorldModel:
        model = LatentWorldModel(train=TrainConfig(checkpoint_dir=str(checkpoint)), **SETTINGS)
        model.fit(data["train"], data["val"], max_epochs=epochs, batch_size=64,
                  progress=False)
        return model

    straight = train(4, tmp_path / "a")
    train(2, tmp_path / "b")  # interrupted after two epochs ...
    resumed = train(4, tmp_path / "b")  # ... and resumed to four
    for (name, a), (_, b) in zip(straight.network.state_dict().items(),
                                 resumed.network.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_untrained_model_and_bad_histories_are_refused(ensemble, data):
    with pytest.raises(InvalidInputError, match="not trained"):
        LatentWorldModel(**SETTINGS).encode(data["test"])
    short = ensemble.members[0].windows(data["test"], stride=8).history
    with pytest.raises(InvalidInputError, match="needs 8"):
        ensemble.encode(short.select([0]).__class__(
            times=short.times[:1, :4], obs=short.obs[:1, :4], actions=short.actions[:1, :4],
            mask=short.mask[:1, :4], static=short.static[:1], subject_ids=["x"],
            obs_space=short.obs_space, action_space=short.action_space,
            static_space=short.static_space))


def test_members_checkpoint_separately_and_unknown_options_are_refused(data, tmp_path):
    model = DeepEnsemble(members=2, train=TrainConfig(checkpoint_dir=str(tmp_path)), **SETTINGS)
    model.fit(data["train"], data["val"], max_epochs=1, batch_size=64, progress=False)
    assert (tmp_path / "member0" / "checkpoint.json").is_file()
    assert (tmp_path / "member1" / "checkpoint.json").is_file()
    with pytest.raises(InvalidInputError, match="unknown training option 'epochs'"):
        LatentWorldModel(**SETTINGS).fit(data["train"], data["val"], epochs=3)

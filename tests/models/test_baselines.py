"""Persistence and LinearARX baselines: accuracy, calibration, the protocol's edges, save/load."""

import json

import pytest
import torch
from synthetic import ACT, OBS, STATIC, STEP, linear_system  # noqa: E402,F401

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, WorldModel
from biowm.models import load_world_model
from biowm.models.linear import LinearARX
from biowm.models.persistence import Persistence
from biowm.models.windows import make_windows, select_obs

H = 12


@pytest.fixture(scope="module")
def data():
    return {
        "train": linear_system(16, 200, seed=1),
        "val": linear_system(8, 200, seed=2),
        "test": linear_system(8, 200, seed=3),
    }


@pytest.fixture(scope="module")
def fitted(data):
    models = {}
    for cls in (Persistence, LinearARX):
        model = cls(history_steps=8, horizon_steps=H, stride=2)
        report = model.fit(data["train"], data["val"])
        models[cls.model_name] = (model, report)
    return models


@pytest.fixture(scope="module")
def test_windows(data):
    return make_windows(data["test"], 8, H, stride=4)


def forecast_windows(model, windows, n_samples=200, seed=0):
    return model.imagine(model.encode(windows.history), windows.future_actions, n_samples, seed)


def rmse(forecast, windows):
    error = torch.where(windows.future_mask, forecast.extras["mean"] - windows.future_obs, 0.0)
    return float(torch.sqrt((error**2).sum() / windows.future_mask.sum()))


def coverage(forecast, windows, level=0.9):
    low, high = forecast.interval(level)
    inside = (windows.future_obs >= low) & (windows.future_obs <= high)
    return float((inside & windows.future_mask).sum() / windows.future_mask.sum())


def test_both_implement_the_protocol_and_report_the_fit(fitted):
    persistence, p_report = fitted["persistence"]
    linear, l_report = fitted["linear"]
    for model in (persistence, linear):
        assert isinstance(model, WorldModel)
        assert model.obs_space.names == ["x_level", "y_level"]
        assert model.action_space == ACT and model.static_space == STATIC
        assert model.step == STEP
    assert "nothing to train" in p_report.stopped_because
    assert linear.chosen_ridge in [r["ridge"] for r in l_report.history]
    assert f"ridge={linear.chosen_ridge:g} chosen by validation" in l_report.stopped_because
    assert l_report.best_val_loss == min(r["val_loss"] for r in l_report.history)
    assert l_report.best_val_loss < 0.5 * p_report.best_val_loss


def test_linear_is_much_more_accurate_than_persistence(fitted, test_windows):
    scores = {name: rmse(forecast_windows(m, test_windows), test_windows)
              for name, (m, _) in fitted.items()}
    print(f"held-out RMSE: {scores}")
    assert scores["linear"] < 0.4 * scores["persistence"]


@pytest.mark.parametrize("name", ["persistence", "linear"])
def test_90_percent_intervals_cover_about_90_percent(fitted, test_windows, name):
    model, _ = fitted[name]
    covered = coverage(forecast_windows(model, test_windows), test_windows)
    print(f"{name} 90% interval coverage on held-out windows: {covered:.3f}")
    assert 0.8 <= covered <= 0.97


def test_forecast_shapes_times_and_seeded_samples(fitted, test_windows):
    model, _ = fitted["linear"]
    belief = model.encode(test_windows.history.select(range(3)))
    actions = test_windows.future_actions[:3]
    forecast = model.imagine(belief, actions, n_samples=7, seed=4)
    assert forecast.samples.shape == (7, 3, H, 2)
    assert torch.equal(forecast.times[0], STEP * torch.arange(1, H + 1, dtype=torch.float64))
    assert torch.equal(forecast.samples, model.imagine(belief, actions, 7, seed=4).samples)
    assert not torch.equal(forecast.samples, model.imagine(belief, actions, 7, seed=5).samples)


def test_shorter_horizon_is_the_start_of_the_full_one(fitted, test_windows):
    """Causal in the future actions: later actions cannot change earlier forecasts."""
    model, _ = fitted["linear"]
    belief = model.encode(test_windows.history.select(range(4)))
    actions = test_windows.future_actions[:4]
    full = model.imagine(belief, actions, n_samples=2).extras["mean"]
    short = model.imagine(belief, actions[:, :5], n_samples=2).extras["mean"]
    torch.testing.assert_close(short, full[:, :5])
    changed = actions.clone()
    changed[:, 5:] = 1.0 - changed[:, 5:]
    torch.testing.assert_close(
        model.imagine(belief, changed, n_samples=2).extras["mean"][:, :5], full[:, :5]
    )


def test_dose_response_has_the_right_sign(fitted, test_windows):
    model, _ = fitted["linear"]
    belief = model.encode(test_windows.history.select(range(4)))
    low = model.imagine(belief, torch.zeros(4, H, 1), 2).extras["mean"]
    high = model.imagine(belief, torch.ones(4, H, 1), 2).extras["mean"]
    # One step of u = 1 adds 2 to x; after k steps the gap is 2 (1 - 0.9^k) / 0.1.
    gap = (high - low)[..., 0].mean(dim=0)
    assert gap[0] == pytest.approx(2.0, abs=0.2)
    assert gap[-1] == pytest.approx(20.0 * (1 - 0.9**H), rel=0.1)


@pytest.mark.parametrize("name", ["persistence", "linear"])
def test_save_load_round_trip_gives_identical_forecasts(fitted, test_windows, tmp_path, name):
    model, _ = fitted[name]
    model.save(tmp_path / "model")
    loaded = load_world_model(tmp_path / "model")
    assert type(loaded) is type(model)
    assert loaded.obs_space == model.obs_space and loaded.step == model.step
    history = test_windows.history.select(range(5))
    actions = test_windows.future_actions[:5]
    before = model.imagine(model.encode(history), actions, n_samples=20, seed=3)
    after = loaded.imagine(loaded.encode(history), actions, n_samples=20, seed=3)
    assert torch.equal(before.samples, after.samples)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert config["model_class"] == name and config["hyperparameters"]["history_steps"] == 8
    assert manifest["config"]["n_train_windows"] > 0 and manifest["config"]["n_val_windows"] > 0
    card = (tmp_path / "model" / "card.md").read_text()
    assert "Baseline for comparison" in card and "x_level" in card and "s1-000" in card


def test_loaded_linear_keeps_the_chosen_ridge(fitted, tmp_path):
    model, _ = fitted["linear"]
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["chosen_ridge"] == model.chosen_ridge
    assert config["ridge_chosen_by"] == "validation grid"
    assert LinearARX.load(tmp_path / "m").chosen_ridge == model.chosen_ridge


def test_corrupted_weights_are_refused(fitted, tmp_path):
    model, _ = fitted["linear"]
    model.save(tmp_path / "m")
    weights = tmp_path / "m" / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(b ^ 0xFF for b in raw[-8:])
    weights.chmod(0o644)
    weights.write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError, match="hash .*corrupted"):
        load_world_model(tmp_path / "m")


def test_unknown_format_version_is_refused(fitted, tmp_path):
    model, _ = fitted["persistence"]
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config["format_version"] = 99
    path.chmod(0o644)
    path.write_text(json.dumps(config))
    with pytest.raises(InvalidInputError, match="format version 99"):
        load_world_model(tmp_path / "m")


def test_missing_directory_and_wrong_class_are_refused(fitted, tmp_path):
    with pytest.raises(InvalidInputError, match="not a model directory"):
        load_world_model(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="does not exist"):
        LinearARX.load(tmp_path / "nowhere")
    fitted["persistence"][0].save(tmp_path / "p")
    with pytest.raises(InvalidInputError, match="'persistence' model, not 'linear'"):
        LinearARX.load(tmp_path / "p")


@pytest.mark.parametrize("name", ["persistence", "linear"])
def test_bad_actions_and_horizons_are_refused(fitted, test_windows, name):
    model, _ = fitted[name]
    belief = model.encode(test_windows.history.select(range(2)))
    actions = test_windows.future_actions[:2].clone()
    actions[1, 3, 0] = 1.5
    with pytest.raises(InvalidInputError, match="'dose_mg' .* out of range"):
        model.imagine(belief, actions)
    with pytest.raises(InvalidInputError, match=f"1 to {H} steps"):
        model.imagine(belief, torch.zeros(2, H + 1, 1))
    with pytest.raises(InvalidInputError, match=r"actions must be \[B=2"):
        model.imagine(belief, torch.zeros(3, H, 1))


def test_histories_are_checked_and_their_last_valid_points_used(fitted, data):
    model, _ = fitted["linear"]
    test = data["test"].select(range(2))
    with pytest.raises(InvalidInputError, match="has 5 valid time points; .* last 8"):
        model.encode(Trajectories(
            times=test.times[:, :5], obs=test.obs[:, :5], actions=test.actions[:, :5],
            mask=test.mask[:, :5], static=test.static, subject_ids=test.subject_ids,
            obs_space=OBS, action_space=ACT, static_space=STATIC,
        ))
    with pytest.raises(InvalidInputError, match="lacks observation channels \\['y_level'\\]"):
        model.encode(select_obs(test, ["x_level"]))
    # A padded subject is read up to its last valid time: same belief as the unpadded cut.
    cut = 30
    padded_times = test.times.clone()
    padded_times[0, cut:] = torch.nan
    padded = Trajectories(
        times=padded_times, obs=test.obs, actions=test.actions,
        mask=test.mask & torch.isfinite(padded_times)[..., None], static=test.static,
        subject_ids=test.subject_ids, obs_space=OBS, action_space=ACT, static_space=STATIC,
    )
    alone = test.select([0])
    alone = Trajectories(
        times=alone.times[:, :cut], obs=alone.obs[:, :cut], actions=alone.actions[:, :cut],
        mask=alone.mask[:, :cut], static=alone.static, subject_ids=alone.subject_ids,
        obs_space=OBS, action_space=ACT, static_space=STATIC,
    )
    b_padded, b_alone = model.encode(padded), model.encode(alone)
    for key in ("last", "features"):
        torch.testing.assert_close(b_padded.tensors[key][:1], b_alone.tensors[key])


def test_obs_channels_restrict_what_the_model_sees(data, test_windows):
    model = LinearARX(history_steps=8, horizon_steps=H, stride=2, obs_channels=["x_level"],
                      ridge=0.01)
    report = model.fit(data["train"], data["val"])
    assert "given ridge=0.01" in report.stopped_because
    assert model.obs_space.names == ["x_level"]
    # Histories that carry extra channels are fine: the model picks its own by name.
    forecast = forecast_windows(model, test_windows, n_samples=10)
    assert forecast.samples.shape[-1] == 1 and forecast.space.names == ["x_level"]


def test_bad_arguments_are_refused(data):
    with pytest.raises(InvalidInputError, match="history_steps"):
        Persistence(history_steps=0)
    with pytest.raises(InvalidInputError, match="ridge must be a positive"):
        LinearARX(ridge=-1.0)
    with pytest.raises(InvalidInputError, match="unknown options \\['epochs'\\]"):
        LinearARX(history_steps=8, horizon_steps=H).fit(data["train"], data["val"], epochs=3)
    with pytest.raises(InvalidInputError, match="lacks observation channels"):
        Persistence(obs_channels=["z_level"]).fit(data["train"], data["val"])
    with pytest.raises(InvalidInputError, match="not fitted"):
        Persistence().encode(data["test"])
    with pytest.raises(InvalidInputError, match="belief was not made"):
        model = Persistence(history_steps=8, horizon_steps=H)
        model.fit(data["train"], data["val"])
        model.imagine(Belief({"other": torch.zeros(2, 2)}), torch.zeros(2, H, 1))


def test_linear_beats_persistence_at_60_min_on_simulated_cgm():
    """Real glucose logs: 12 virtual patients, 2 days, clinician policy; CGM only (no truth)."""
    from biowm.domains.glucose.cohort import simulate_shard
    from biowm.domains.glucose.controllers import ClinicianPolicy
    from biowm.domains.glucose.scenario import MealSchedule
    from biowm.domains.glucose.simulator import GlucoseSimulator

    simulator = GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=2)
    groups = ("adolescent", "adult", "child")
    patients = [f"{group}#{i:03d}" for i in range(1, 5) for group in groups]
    logs = simulate_shard(simulator, ClinicianPolicy(), patients, days=2, seed=11)
    train, val, test = logs.select(range(6)), logs.select(range(6, 9)), logs.select(range(9, 12))
    windows = make_windows(test, 24, 24, stride=1)  # histories still carry bg_mg_dl
    sixty_min = 60 // 5 - 1
    scores = {}
    for cls in (Persistence, LinearARX):
        model = cls(obs_channels=["cgm_mg_dl"])
        model.fit(train, val)
        forecast = forecast_windows(model, windows, n_samples=100)
        error = forecast.extras["mean"][:, sixty_min, 0] - windows.future_obs[:, sixty_min, 0]
        scores[cls.model_name] = float(error.pow(2).mean().sqrt())
    print(f"CGM RMSE at 60 min (mg/dL): {scores}")
    assert scores["linear"] < 0.9 * scores["persistence"]

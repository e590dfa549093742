"""SequenceWorldModel (whole-trajectory latent model, optional IPTW) and the propensity helpers."""

import math

import pytest
import torch
from synthetic import linear_system
from torch import nn

from biowm.bench.counterfactual import histories_until
from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Forecast, WorldModel
from biowm.models import load_world_model
from biowm.models.propensity import (
    check_binary,
    fit_propensity,
    step_ratios,
    truncate_and_normalise,
    window_weights,
)
from biowm.models.sequence import SequenceConfig, SequenceWorldModel
from biowm.models.training import TrainConfig

H = 4
SMALL = {"horizon_steps": H, "latent_dim": 8, "hidden_dim": 16, "static_dim": 4}
TRAIN = {"max_epochs": 2, "batch_size": 32, "progress": False}


@pytest.fixture(scope="module")
def data():
    return {"train": linear_system(16, 40, seed=1), "val": linear_system(6, 40, seed=2),
            "test": linear_system(5, 40, seed=3)}


@pytest.fixture(scope="module")
def model(data):
    m = SequenceWorldModel(SequenceConfig(log_channels=["x_level"], **SMALL))
    report = m.fit(data["train"], data["val"], **TRAIN)
    assert report.epochs == 2 and math.isfinite(report.best_val_loss)
    return m


def test_fits_and_follows_the_protocol(model, data):
    assert isinstance(model, WorldModel)
    assert model.obs_space.names == ["x_level", "y_level"]
    assert model.action_space.names == ["dose_mg"] and model.step == 5.0
    assert model.provenance["n_train_subjects"] == 16 and model.provenance["epochs"] == 2
    assert model.train_config.max_epochs == 2  # the fit options were applied
    assert model.scale.shape == (H, 2)


def test_encode_takes_histories_of_different_lengths(model, data):
    test = data["test"]
    subject = torch.tensor([0, 1, 2, 3, 4])
    origin = torch.tensor([0, 3, 10, 25, 39])
    history = histories_until(test, subject, origin)
    assert torch.equal(history.lengths, origin + 1)
    belief = model.encode(history)
    assert len(belief) == 5
    assert set(belief.tensors) == {"z", "static_embedding", "last_obs"}
    # the NaN padding after a history's end is invisible: same belief as the cut trajectory
    for i in (1, 3):
        cut = test.select([int(subject[i])])
        n = int(origin[i]) + 1
        cut = Trajectories(times=cut.times[:, :n], obs=cut.obs[:, :n], actions=cut.actions[:, :n],
                           mask=cut.mask[:, :n], static=cut.static, subject_ids=cut.subject_ids,
                           obs_space=cut.obs_space, action_space=cut.action_space,
                           static_space=cut.static_space, time_unit=cut.time_unit)
        alone = model.encode(cut)
        torch.testing.assert_close(alone.tensors["z"][0], belief.tensors["z"][i])
    # … while a longer history does change it
    longer = model.encode(histories_until(test, subject[:1], torch.tensor([5])))
    assert not torch.allclose(longer.tensors["z"][0], belief.tensors["z"][0])


def test_encode_refuses_an_empty_history_and_an_unfitted_model(model, data):
    with pytest.raises(InvalidInputError, match="outside its subject"):
        histories_until(data["test"], torch.tensor([0]), torch.tensor([-1]))
    empty = data["test"].select([0])
    empty.times = torch.full_like(empty.times, torch.nan)
    with pytest.raises(InvalidInputError, match="empty"):
        model.encode(empty)
    with pytest.raises(InvalidInputError, match="not trained"):
        SequenceWorldModel(**SMALL).encode(data["test"])


def test_imagine_returns_a_forecast_with_its_exact_mean(model, data):
    history = histories_until(data["test"], torch.arange(5), torch.full((5,), 20))
    belief = model.encode(history)
    actions = torch.zeros(5, 3, 1)
    forecast = model.imagine(belief, actions, n_samples=400, seed=1)
    assert isinstance(forecast, Forecast)
    assert forecast.samples.shape == (400, 5, 3, 2)
    assert forecast.extras["mean"].shape == (5, 3, 2)
    torch.testing.assert_close(forecast.times[0], torch.tensor([5.0, 10.0, 15.0]))
    # x is modelled on the log scale: positive samples, lognormal mean exp(μ + σ²/2)
    assert bool((forecast.samples[..., 0] > 0).all())
    mu, sd = model._moments(belief, actions)
    torch.testing.assert_close(forecast.extras["mean"][..., 0],
                               torch.exp(mu[..., 0] + 0.5 * sd[..., 0] ** 2))
    torch.testing.assert_close(forecast.extras["mean"][..., 1], mu[..., 1])
    # the sample median of a log channel is exp(μ)
    median = forecast.samples[..., 0].median(dim=0).values
    torch.testing.assert_close(median, torch.exp(mu[..., 0]), rtol=0.05, atol=0)
    # the same seed gives the same samples; a longer horizon than trained is refused
    again = model.imagine(belief, actions, n_samples=400, seed=1)
    assert torch.equal(again.samples, forecast.samples)
    with pytest.raises(InvalidInputError, match="exceeds"):
        model.imagine(belief, torch.zeros(5, H + 1, 1))
    with pytest.raises(InvalidInputError):
        model.imagine(belief, torch.full((5, 2, 1), 3.0))  # outside the dose range


def test_save_load_round_trip_gives_identical_forecasts(model, data, tmp_path):
    model.save(tmp_path / "m")
    loaded = load_world_model(tmp_path / "m")
    assert isinstance(loaded, SequenceWorldModel)
    assert loaded.config == model.config
    history = histories_until(data["test"], torch.arange(5), torch.tensor([0, 5, 10, 15, 20]))
    actions = torch.ones(5, H, 1)
    a = model.imagine(model.encode(history), actions, 30, seed=2)
    b = loaded.imagine(loaded.encode(history), actions, 30, seed=2)
    assert torch.equal(a.samples, b.samples)
    assert torch.equal(a.extras["mean"], b.extras["mean"])


def test_a_corrupted_weights_file_is_refused(model, tmp_path):
    model.save(tmp_path / "m")
    weights = tmp_path / "m" / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError, match="does not match manifest"):
        SequenceWorldModel.load(tmp_path / "m")


def test_bad_configuration_is_refused(data):
    with pytest.raises(InvalidInputError, match="deconfounding"):
        SequenceConfig(deconfounding="ipw")
    with pytest.raises(InvalidInputError, match="deconfounding"):
        SequenceWorldModel(deconfounding="bogus")
    with pytest.raises(InvalidInputError, match="horizon_steps"):
        SequenceConfig(horizon_steps=0)
    with pytest.raises(InvalidInputError, match="log_channels"):
        SequenceWorldModel(log_channels=["z_level"], **SMALL).fit(data["train"], data["val"],
                                                                  **TRAIN)
    with pytest.raises(InvalidInputError, match="unknown training option"):
        SequenceWorldModel(**SMALL).fit(data["train"], data["val"], epochs=3)


def with_actions(data: Trajectories, actions: torch.Tensor) -> Trajectories:
    return Trajectories(times=data.times, obs=data.obs, actions=actions, mask=data.mask,
                        static=data.static, subject_ids=data.subject_ids,
                        obs_space=data.obs_space, action_space=data.action_space,
                        static_space=data.static_space, time_unit=data.time_unit)


def test_iptw_needs_binary_treatments(data):
    half = with_actions(data["train"], data["train"].actions * 0.5)
    model = SequenceWorldModel(deconfounding="iptw", **SMALL)
    with pytest.raises(InvalidInputError, match="binary"):
        model.fit(half, data["val"], **TRAIN)


def test_iptw_fits_on_binary_treatments_and_records_its_weights(data):
    model = SequenceWorldModel(deconfounding="iptw", **SMALL)
    model.fit(data["train"], data["val"], **(TRAIN | {"max_epochs": 1}))
    assert model.provenance["iptw_cap"] > 0
    assert model.provenance["iptw_max_weight"] > 0
    (rate,) = model.provenance["iptw_marginal_rates"]
    assert 0.3 < rate < 0.7  # u is a fair coin in the synthetic system
    assert "val_nll_unweighted" in model.provenance


# --- propensity helpers --------------------------------------------------------------------


def test_window_weights_are_products_of_step_ratios():
    g = torch.Generator().manual_seed(0)
    ratios = 0.5 + torch.rand(3, 7, generator=g)
    horizon = 4
    weights = window_weights(ratios, horizon)
    assert weights.shape == (3, 7, horizon)
    for b in range(3):
        for t in range(7):
            for k in range(horizon):
                steps = [float(ratios[b, s]) for s in range(t, t + k + 1) if s < 7]
                assert float(weights[b, t, k]) == pytest.approx(math.prod(steps), rel=1e-5)


def test_truncate_and_normalise_caps_at_the_quantile_and_has_mean_one():
    g = torch.Generator().manual_seed(1)
    weights = torch.exp(2 * torch.randn(10, 20, 3, generator=g))
    used = torch.rand(10, 20, 3, generator=g) > 0.3
    weights[~used] = 1e6  # unused entries neither set the cap nor the scale
    recipe = truncate_and_normalise(weights, used, 0.9)
    values = weights[used].double()
    low = float(torch.quantile(values, 0.9, interpolation="lower"))
    high = float(torch.quantile(values, 0.9, interpolation="higher"))
    assert low <= recipe.cap <= high  # an order statistic at the 90 % quantile
    assert recipe.cap < 1e5
    assert float(recipe.weights[used].mean()) == pytest.approx(1.0, rel=1e-5)
    assert float(recipe.weights[used].max()) == pytest.approx(recipe.cap / recipe.scale)
    capped = (weights[used] >= recipe.cap).float().mean()
    assert 0.09 <= float(capped) <= 0.12
    # a recipe is reused as is on other data (validation weights)
    other = torch.exp(torch.randn(4, 5, 3, generator=g))
    reused = truncate_and_normalise(other, torch.ones_like(other, dtype=torch.bool), 0.5,
                                    recipe.cap, recipe.scale)
    assert (reused.cap, reused.scale) == (recipe.cap, recipe.scale)
    torch.testing.assert_close(reused.weights, other.clamp(max=recipe.cap) / recipe.scale)


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(inputs.shape[0], inputs.shape[1], -1)


def test_step_ratios_are_marginal_over_propensity_and_one_where_undecided():
    p = torch.tensor([0.8, 0.25])
    network = FixedLogits(torch.log(p / (1 - p)))
    actions = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    decided = torch.tensor([[True, True, False]])
    marginal = torch.tensor([0.5, 0.5])
    ratios = step_ratios(network, torch.zeros(1, 3, 4), actions, decided, marginal)
    expected = torch.tensor([[0.5 / 0.8 * 0.5 / 0.75, 0.5 / 0.2 * 0.5 / 0.25, 1.0]])
    torch.testing.assert_close(ratios, expected)


def test_check_binary_looks_only_at_decided_steps():
    actions = torch.tensor([[[1.0], [0.0], [0.5]]])
    check_binary(actions, torch.tensor([[True, True, False]]))
    with pytest.raises(InvalidInputError, match="binary"):
        check_binary(actions, torch.tensor([[True, True, True]]))


def test_fit_propensity_learns_a_history_dependent_treatment_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, 1, generator=g)
    treated = (torch.rand(200, 10, 1, generator=g) < torch.sigmoid(3 * x)).float()
    decided = torch.ones(200, 10, dtype=torch.bool)
    config = TrainConfig(max_epochs=30, batch_size=50, learning_rate=2e-2, progress=False)
    network = fit_propensity(x[:150], treated[:150], decided[:150], x[150:], treated[150:],
                             decided[150:], config)
    with torch.no_grad():
        p = torch.sigmoid(network(x[150:]))
    correlation = torch.corrcoef(torch.stack([p.flatten(), x[150:].flatten()]))[0, 1]
    assert float(correlation) > 0.8


def test_truncate_and_normalise_handles_more_than_two_to_the_24_weights():
    weights = torch.ones(2**24 + 8)
    weights[-8:] = 100.0
    recipe = truncate_and_normalise(weights, torch.ones_like(weights, dtype=torch.bool), 0.99)
    assert recipe.cap == 1.0

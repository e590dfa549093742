"""The whole-trajectory surrogate on an analytic system whose answer is known."""

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import WorldModel
from biowm.models.trajectory_surrogate import SurrogateConfig, TrajectorySurrogate

GRID = torch.linspace(0.0, 10.0, 11)
FAST = dict(members=2, hidden=64, layers=2, max_epochs=60, patience=60, progress=False,
            student_hidden=64, student_layers=2, student_epochs=60)


def _system(n: int, seed: int) -> Trajectories:
    """Decay at a per-cell rate exp(static) towards a level the dose lowers; dose doubles
    after t = 5 in some cells. Concentrations >= 0."""
    g = torch.Generator().manual_seed(seed)
    static = 0.3 * torch.randn(n, 1, generator=g)
    first = torch.rand(n, 1, generator=g)
    second = torch.rand(n, 1, generator=g)
    dose = torch.where(GRID[None] < 5, first, second)  # [n, T]
    rate = 0.4 * torch.exp(static)
    level = 2.0 * (1.0 - 0.8 * dose)
    a = 3.0 * torch.exp(-rate * GRID[None]) + level * (1 - torch.exp(-rate * GRID[None]))
    b = a * (0.5 + 0.2 * dose)
    obs = torch.stack([a, b], dim=-1)
    return Trajectories(
        times=GRID.expand(n, -1).clone(), obs=obs, actions=dose[..., None],
        mask=torch.ones_like(obs, dtype=torch.bool), static=static,
        subject_ids=[f"c{i}" for i in range(n)],
        obs_space=Space((Channel("A", "nM", 0.0), Channel("B", "nM", 0.0))),
        action_space=Space((Channel("drug", "fraction", 0.0, 1.0),)),
        static_space=Space((Channel("log_ratio_k", "log ratio"),)), time_unit="s")


@pytest.fixture(scope="module")
def fitted():
    model = TrajectorySurrogate(SurrogateConfig(**FAST))
    model.fit(_system(1500, 0), _system(300, 1))
    return model


def _nrmse(mean, truth):
    span = truth.amax(dim=(0, 1)) - truth.amin(dim=(0, 1))
    return float((((mean - truth) ** 2).mean(dim=(0, 1)).sqrt() / span).mean())


def test_learns_held_out_trajectories_and_uses_the_covariates(fitted):
    test = _system(400, 2)
    known, known_sd = fitted.predictive(test.static, test.actions)
    hidden, hidden_sd = fitted.predictive(None, test.actions)
    assert _nrmse(known, test.obs) < 0.03
    assert _nrmse(known, test.obs) < 0.7 * _nrmse(hidden, test.obs)
    assert float(known_sd.mean()) < float(hidden_sd.mean())  # knowing the cell narrows it
    for mean, sd in ((known, known_sd), (hidden, hidden_sd)):
        coverage = float(((test.obs - mean).abs() <= 1.645 * sd).float().mean())
        assert 0.8 <= coverage <= 0.98


def test_world_model_protocol_samples_and_files(fitted, tmp_path):
    assert isinstance(fitted, WorldModel)
    test = _system(5, 3)
    belief = fitted.encode(test)
    forecast = fitted.imagine(belief, test.actions, n_samples=7, seed=1)
    assert forecast.samples.shape == (7, 5, 11, 2) and float(forecast.samples.min()) >= 0.0
    mixed = test.static.clone()
    mixed[0] = torch.nan  # one cell of unknown parameters
    assert fitted.sample(mixed, test.actions, 3).shape == (3, 5, 11, 2)
    fitted.save(tmp_path / "model")
    again = TrajectorySurrogate.load(tmp_path / "model")
    torch.testing.assert_close(again.predictive(test.static, test.actions),
                               fitted.predictive(test.static, test.actions))
    assert "trajectory surrogate" in (tmp_path / "model" / "card.md").read_text()


def test_ensemble_disagrees_more_outside_the_trained_dose_range(fitted):
    test = _system(200, 4)
    inside = fitted.epistemic_sd(test.static, test.actions).mean()
    outside = fitted.epistemic_sd(test.static, test.actions + 3.0).mean()
    assert float(outside) > 2 * float(inside)


def test_refusals(fitted):
    test = _system(4, 5)
    with pytest.raises(InvalidInputError, match="actions must be"):
        fitted.predictive(test.static, test.actions[:, :5])
    with pytest.raises(InvalidInputError, match="static covariates must be"):
        fitted.predictive(test.static[:, :0], test.actions)
    with pytest.raises(InvalidInputError, match="unknown surrogate option"):
        TrajectorySurrogate().fit(test, test, learning_rte=1.0)
    with pytest.raises(InvalidInputError, match="fit or load"):
        TrajectorySurrogate().predictive(None, test.actions)


def test_intervals_stay_calibrated_for_species_in_tiny_units():
    """Concentrations of order 1e-6 (e.g. µM enzymes) must calibrate like any other."""

    def tiny(data):
        data.obs = data.obs * 1e-6
        return data

    model = TrajectorySurrogate(SurrogateConfig(**{**FAST, "members": 1, "max_epochs": 30}))
    model.fit(tiny(_system(800, 0)), tiny(_system(300, 1)))
    test = tiny(_system(400, 2))
    mean, sd = model.predictive(test.static, test.actions)
    coverage = float(((test.obs - mean).abs() <= 1.645 * sd).float().mean())
    assert 0.8 <= coverage <= 0.98


@pytest.fixture(scope="module")
def with_basis():
    """Basis outputs (6 temporal modes of 11 grid times): the student's folded fast path."""
    model = TrajectorySurrogate(SurrogateConfig(**{**FAST, "basis": 6}))
    model.fit(_system(1500, 0), _system(300, 1))
    return model


def test_student_imitates_the_ensemble_and_stays_calibrated(with_basis):
    test = _system(400, 2)
    student, student_sd = with_basis.predictive(test.static, test.actions)
    ensemble, _ = with_basis.predictive(test.static, test.actions, ensemble=True)
    assert with_basis.student
    assert _nrmse(student, test.obs) < 0.04
    assert _nrmse(student, ensemble) < 0.02  # close to what it imitates
    coverage = float(((test.obs - student).abs() <= 1.645 * student_sd).float().mean())
    assert 0.8 <= coverage <= 0.98
    hidden, hidden_sd = with_basis.predictive(None, test.actions)
    assert float(student_sd.mean()) < float(hidden_sd.mean())
    coverage = float(((test.obs - hidden).abs() <= 1.645 * hidden_sd).float().mean())
    assert 0.8 <= coverage <= 0.98


def test_student_fast_path_matches_its_plain_decoding(with_basis):
    """The folded hot path equals decoding the student's outputs step by step, and a batch
    mixing known and hidden cells equals the two asked separately."""
    from biowm.models.trajectory_surrogate import _forward

    test = _system(50, 6)
    t = with_basis.tensors
    x = with_basis._features(test.static, test.actions)
    mean, log_sd = with_basis._decode(_forward(with_basis.student, x)[0]).unbind(dim=-3)
    plain_mean = torch.maximum(mean * t["obs_sd"] + t["obs_mean"], t["obs_floor"])
    plain_sd = log_sd.exp() * t["student_scale_known"] * t["obs_sd"]
    fast_mean, fast_sd = with_basis.predictive(test.static, test.actions)
    torch.testing.assert_close(fast_mean, plain_mean)
    torch.testing.assert_close(fast_sd, plain_sd)
    mixed = test.static.clone()
    mixed[::2] = torch.nan
    mixed_mean, mixed_sd = with_basis.predictive(mixed, test.actions)
    hidden_mean, hidden_sd = with_basis.predictive(None, test.actions)
    torch.testing.assert_close(mixed_mean[::2], hidden_mean[::2])
    torch.testing.assert_close(mixed_sd[1::2], fast_sd[1::2])
    torch.testing.assert_close(mixed_sd[::2], hidden_sd[::2])


def test_student_is_saved_and_optional(with_basis, tmp_path):
    test = _system(20, 7)
    with_basis.save(tmp_path / "model")
    again = TrajectorySurrogate.load(tmp_path / "model")
    assert len(again.student) == len(with_basis.student)
    torch.testing.assert_close(again.predictive(test.static, test.actions),
                               with_basis.predictive(test.static, test.actions))
    torch.testing.assert_close(again.sample(test.static, test.actions, 3, seed=2),
                               with_basis.sample(test.static, test.actions, 3, seed=2))
    again.student = []  # without a student the ensemble answers
    torch.testing.assert_close(again.predictive(test.static, test.actions),
                               with_basis.predictive(test.static, test.actions, ensemble=True))


def test_student_spread_stays_sane_where_every_cell_starts_alike(with_basis):
    """At t = 0 species A is the same in every cell (sd ≈ 0): the calibrated student must not
    inflate its interval there. (On the 80,000-cell Kholodenko benchmark a linear-sd student
    did, by up to 10⁵× the range; this toy is too small to reproduce that, so it guards the
    property, not that exact failure.)"""
    test = _system(400, 8)
    span = test.obs.amax(dim=(0, 1)) - test.obs.amin(dim=(0, 1))
    for static in (test.static, None):
        _, sd = with_basis.predictive(static, test.actions)
        assert float((sd / span).max()) < 0.5

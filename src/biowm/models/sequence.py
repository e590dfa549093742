"""Sequence world model: the latent model trained on whole trajectories, deconfoundable.

The window model (`latent.py`) cuts fixed-length histories. This one runs its causal
encoder once over each whole trajectory and rolls the latent transition out from *every*
time step (all-origin overshooting), so histories of any length — day 0 included — are
native and one pass trains on T origins. Network, belief and protocol are the latent
model's: GRU encoder, action-conditioned GRU-cell transition, Gaussian decoder.

Options that matter for treatment data:
- `log_channels`: channels modelled on the log scale (positive quantities with
  multiplicative dynamics, e.g. tumour volume): a treatment that kills a fraction of
  cells is then the same shift for a small and a large tumour, which is what lets the
  model carry an effect seen mostly on large (treated) tumours over to small ones.
- `deconfounding="iptw"`: the training and validation likelihoods are weighted by
  stabilised inverse propensity weights (`propensity.py`), so the model is fitted — and
  early-stopped — on a re-weighted population whose treatments no longer depend on
  the history. `"none"` is the ablation.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories, trajectories_sha256
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.calibration import error_correlation, spread_scale
from biowm.models.direct import _median_step, _observed_ranges
from biowm.models.latent import LatentConfig, LatentNetwork, Normaliser, _card
from biowm.models.noise import correlated_normal
from biowm.models.propensity import (
    check_binary,
    fit_propensity,
    step_ratios,
    truncate_and_normalise,
    window_weights,
)
from biowm.models.registry import register_model
from biowm.models.training import TrainConfig, evaluate_loss, train_module

DECONFOUNDING = ("none", "iptw")


@dataclass
class SequenceConfig:
    """Architecture, data and deconfounding settings (training settings separate)."""

    horizon_steps: int = 6
    obs_channels: list[str] | None = None
    log_channels: list[str] = field(default_factory=list)
    log_floor: float = 1e-3
    latent_dim: int = 64
    hidden_dim: int = 128
    static_dim: int = 8
    use_static: bool = True
    deconfounding: str = "none"
    weight_quantile: float = 0.99
    raw_mse_weight: float = 0.0
    origins_per_subject: int = 0  # training origins sampled per subject and batch (0 = all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.deconfounding not in DECONFOUNDING:
            raise InvalidInputError(
                f"deconfounding must be one of {DECONFOUNDING}, got {self.deconfounding!r}"
            )
        if self.horizon_steps < 1 or self.log_floor <= 0:
            raise InvalidInputError("horizon_steps must be >= 1 and log_floor > 0")


@dataclass
class _Sequences:
    """Whole trajectories as network inputs; `[B, T, ...]`, invalid steps zeroed."""

    obs: torch.Tensor
    mask: torch.Tensor
    prev_actions: torch.Tensor  # features of the action taken at the step before
    dt: torch.Tensor
    static: torch.Tensor
    last: torch.Tensor  # last observed (normalised) value up to each step
    valid: torch.Tensor  # [B, T] bool
    actions: torch.Tensor  # raw actions [B, T, A]

    def encoder_inputs(self, static_embedding: torch.Tensor) -> torch.Tensor:
        t = self.obs.shape[1]
        return torch.cat([self.obs * self.mask, self.mask, self.prev_actions, self.dt,
                          static_embedding[:, None, :].expand(-1, t, -1)], dim=2)


def _future(values: torch.Tensor, horizon: int) -> torch.Tensor:
    """`[B, T, ...] -> [B, T, H, ...]`: entry (t, k) is values[t + k] (zero past the end)."""
    b, t = values.shape[:2]
    padded = torch.cat([values, values.new_zeros(b, horizon, *values.shape[2:])], dim=1)
    return padded[:, torch.arange(t)[:, None] + torch.arange(horizon)[None, :]]


@register_model("sequence")
class SequenceWorldModel:
    """See the module docstring."""

    def __init__(self, config: SequenceConfig | None = None, train: TrainConfig | None = None,
                 **overrides: Any) -> None:
        self.config = config or SequenceConfig(**overrides)
        self.train_config = train or TrainConfig(seed=self.config.seed)
        self.network: LatentNetwork | None = None
        self.normaliser: Normaliser | None = None
        self.obs_space = Space()
        self.action_space = Space()
        self.static_space = Space()
        self.step = 1.0
        self.time_unit = ""
        self.scale = torch.ones(self.config.horizon_steps, 1)
        self.rho = torch.zeros(1)
        self.provenance: dict[str, Any] = {}
        # training-only scalings of the raw-scale squared-error term (set by fit)
        self.raw_sd = torch.ones(1)
        self.raw_ceiling = torch.full((1,), torch.inf)

    # ----- data ---------------------------------------------------------------------------
    def _log_index(self) -> list[int]:
        return [self.obs_space.index(c) for c in self.config.log_channels]

    def _transform(self, values: torch.Tensor) -> torch.Tensor:
        out = values.float().clone()
        index = self._log_index()
        out[..., index] = torch.log(out[..., index].clamp(min=self.config.log_floor))
        return out

    def _untransform(self, values: torch.Tensor) -> torch.Tensor:
        out = values.clone()
        index = self._log_index()
        out[..., index] = torch.exp(out[..., index])
        return out

    def _raw(self, data: Trajectories) -> tuple[torch.Tensor, ...]:
        """Transformed obs, observed mask, actions, static, valid times (unnormalised)."""
        missing = [c for c in self.obs_space.names if c not in data.obs_space.names]
        if (missing or data.action_space.names != self.action_space.names
                or data.static_space.names != self.static_space.names):
            raise InvalidInputError(
                f"data channels {data.obs_space.names} / actions {data.action_space.names} / "
                f"static {data.static_space.names} do not match the model's "
                f"{self.obs_space.names} / {self.action_space.names} / {self.static_space.names}"
            )
        channels = [data.obs_space.index(c) for c in self.obs_space.names]
        valid = torch.isfinite(data.times)
        mask = data.mask[..., channels] & valid[..., None]
        for name in self.config.log_channels:  # 0 is floored at log_floor; below 0 is an error
            j = self.obs_space.index(name)
            if (data.obs[..., channels[j]][mask[..., j]] < 0).any():
                raise InvalidInputError(f"log channel {name!r} has negative values")
        obs = torch.where(mask, self._transform(data.obs[..., channels]), 0.0)
        actions = torch.where(valid[..., None], data.actions.float(), 0.0)
        return obs, mask, actions, data.static.float(), valid, data.times

    def _sequences(self, data: Trajectories) -> _Sequences:
        assert self.normaliser is not None
        norm = self.normaliser
        obs, mask, actions, static, valid, times = self._raw(data)
        z = torch.where(mask, norm.obs(obs), 0.0)
        previous = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        t = torch.nan_to_num(times.double(), nan=0.0)
        dt = torch.diff(t, dim=1, prepend=t[:, :1] - self.step).float() / self.step
        dt = torch.where(valid, dt, 0.0)[..., None]
        steps = torch.arange(obs.shape[1])[None, :, None]
        seen = torch.where(mask, steps, -1).cummax(dim=1).values
        last = torch.where(seen >= 0, z.gather(1, seen.clamp(min=0)), 0.0)
        static = norm.static(static) if self.config.use_static else torch.zeros_like(static)
        return _Sequences(
            obs=z, mask=mask.float(), prev_actions=norm.actions(previous), dt=dt,
            static=static, last=last, valid=valid, actions=actions,
        )

    def _targets(self, seq: _Sequences, weights: torch.Tensor | None) -> list[torch.Tensor]:
        h = self.config.horizon_steps
        future_actions = _future(self.normaliser.actions(seq.actions), h)  # type: ignore[union-attr]
        target = _future(seq.obs[:, 1:], h)  # origin t, step k -> obs[t + k + 1]
        target_mask = _future(seq.mask[:, 1:], h) * seq.valid[:, :-1, None, None]
        if weights is not None:
            target_mask = target_mask * weights[:, :-1, :, None]
        pad = torch.zeros_like(target[:, :1])
        return [seq.obs, seq.mask, seq.prev_actions, seq.dt, seq.static, seq.last,
                future_actions, torch.cat([target, pad], 1), torch.cat([target_mask, pad], 1)]

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        assert self.network is not None
        obs, mask, prev, dt, static, last, future, target, target_mask = batch
        every, s = self.network.encode_all(obs, mask, prev, dt, static)
        k = self.config.origins_per_subject
        if self.network.training and 0 < k < every.shape[1]:
            # a random subset of each subject's origins per batch: neighbouring origins
            # share most of their targets, and the rollouts are the cost
            has_target = target_mask.flatten(2).sum(2) > 0
            pick = torch.multinomial(has_target.float() + 1e-6, k)
            rows = torch.arange(len(pick))[:, None]
            every, last, future = every[rows, pick], last[rows, pick], future[rows, pick]
            target, target_mask = target[rows, pick], target_mask[rows, pick]
        b, t, z = every.shape
        h = future.shape[2]
        mean, log_sd = self.network.rollout(
            every.reshape(b * t, z), s.repeat_interleave(t, 0), last.reshape(b * t, -1),
            future.reshape(b * t, h, -1), torch.ones(b * t, h, 1),
        )
        target = target.reshape(mean.shape)
        nll = 0.5 * ((target - mean) / log_sd.exp()) ** 2 + log_sd
        if self.config.raw_mse_weight > 0:
            nll = nll + self.config.raw_mse_weight * self._raw_squared_error(mean, target)
        weight = target_mask.reshape(mean.shape)
        return (nll * weight).sum() / (weight > 0).sum().clamp(min=1)

    def _raw_squared_error(self, mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error of the point forecast on the original scale, in units of the
        channels' raw training sd (normalised -> transformed -> original)."""
        norm = self.normaliser
        assert norm is not None
        ceiling = self.raw_ceiling
        point = self._untransform((mean * norm.obs_sd + norm.obs_mean).clamp(max=ceiling))
        truth = self._untransform(target * norm.obs_sd + norm.obs_mean)
        return ((point - truth) / self.raw_sd) ** 2

    # ----- WorldModel protocol ------------------------------------------------------------
    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        """Train on whole `train` trajectories; early-stop and calibrate on `val`."""
        channels = self.config.obs_channels or train.obs_space.names
        self.obs_space = train.obs_space.subspace(channels)
        unknown = [c for c in self.config.log_channels if c not in channels]
        if unknown:
            raise InvalidInputError(f"log_channels {unknown} are not observation channels")
        self.action_space, self.static_space = train.action_space, train.static_space
        self.time_unit = train.time_unit
        self.step = _median_step(train)
        self.train_config.update(options)
        self.train_config.seed = self.config.seed
        torch.manual_seed(self.config.seed)
        obs, mask, actions, static, valid, _ = self._raw(train)
        if valid.sum() < 2 or len(val) == 0:
            raise InvalidInputError("not enough data: need training and validation trajectories")
        self.normaliser = Normaliser.from_values(obs, mask, actions[valid], static, self.step)
        raw = self._untransform(obs)
        self.raw_sd = torch.stack([raw[..., j][mask[..., j]].std()
                                   for j in range(obs.shape[-1])]).clamp(min=1e-6)
        self.raw_ceiling = torch.stack([obs[..., j][mask[..., j]].max()
                                        for j in range(obs.shape[-1])]) + 1.0
        cfg = self.config
        latent = LatentConfig(latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim,
                              static_dim=cfg.static_dim)
        self.network = LatentNetwork(len(self.obs_space), 2 * len(self.action_space),
                                     len(self.static_space), latent)
        train_seq, val_seq = self._sequences(train), self._sequences(val)
        train_w, val_w = self._weights(train_seq, val_seq)
        report = train_module(self.network, self._loss, self._targets(train_seq, train_w),
                              self._targets(val_seq, val_w), self.train_config)
        self.network.eval()
        self._calibrate(val_seq)
        unweighted = evaluate_loss(self.network, self._loss, self._targets(val_seq, None),
                                   self.train_config.batch_size)
        self.provenance |= {
            "n_train_subjects": len(train), "n_val_subjects": len(val),
            "best_val_loss": round(report.best_val_loss, 4),
            "val_nll_unweighted": round(unweighted, 4), "epochs": report.epochs,
            "observed_ranges": _observed_ranges(train),
            "training_data_sha256": {"train": trajectories_sha256(train),
                                     "val": trajectories_sha256(val)},
        }
        return report

    def _weights(self, train: _Sequences, val: _Sequences
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """IPTW weights `[B, T, H]` for train and val (None without deconfounding)."""
        if self.config.deconfounding == "none":
            return None, None
        pair = (train, val)
        decided = [s.valid & torch.cat([s.valid[:, 1:], torch.zeros_like(s.valid[:, :1])], 1)
                   for s in pair]
        for seq, d in zip(pair, decided, strict=True):
            check_binary(seq.actions, d)
        inputs = [_propensity_inputs(s) for s in pair]
        config = TrainConfig(**{**self.train_config.to_dict(), "checkpoint_dir": None,
                                "description": "propensity",
                                "max_epochs": min(15, self.train_config.max_epochs)})
        network = fit_propensity(inputs[0], train.actions, decided[0],
                                 inputs[1], val.actions, decided[1], config)
        marginal = train.actions[decided[0]].mean(dim=0)
        h = self.config.horizon_steps
        cap = scale = None
        out = []
        for seq, x, d in zip(pair, inputs, decided, strict=True):
            raw = window_weights(step_ratios(network, x, seq.actions, d, marginal), h)
            used = _future(seq.valid[:, 1:], h) & seq.valid[:, :-1, None]
            used = torch.cat([used, torch.zeros_like(used[:, :1])], 1)
            recipe = truncate_and_normalise(raw, used, self.config.weight_quantile, cap, scale)
            cap, scale = recipe.cap, recipe.scale
            out.append(recipe.weights)
        self.provenance |= {"iptw_cap": round(float(cap), 4),
                            "iptw_marginal_rates": [round(float(m), 4) for m in marginal],
                            "iptw_max_weight": round(float(out[0].max()), 3)}
        return out[0], out[1]

    @torch.no_grad()
    def _calibrate(self, val: _Sequences) -> None:
        """Spread scale and error correlation per horizon step from every val origin."""
        network, _ = self._ready()
        tensors = self._targets(val, None)
        every, s = network.encode_all(*tensors[:5])
        b, t, z = every.shape
        future, target, target_mask = tensors[6:]
        h = future.shape[2]
        keep = target_mask.reshape(b * t, h, -1)[:, 0].sum(1) > 0
        mean, log_sd = network.rollout(
            every.reshape(b * t, z)[keep], s.repeat_interleave(t, 0)[keep],
            tensors[5].reshape(b * t, -1)[keep], future.reshape(b * t, h, -1)[keep],
            torch.ones(int(keep.sum()), h, 1),
        )
        truth = target.reshape(b * t, h, -1)[keep]
        observed = target_mask.reshape(b * t, h, -1)[keep] > 0
        self.scale = spread_scale(mean, log_sd.exp(), truth, observed)
        self.rho = error_correlation(mean, log_sd.exp() * self.scale, truth, observed)

    def _ready(self) -> tuple[LatentNetwork, Normaliser]:
        if self.network is None or self.normaliser is None:
            raise InvalidInputError("the model is not trained: call fit() or load() first")
        return self.network, self.normaliser

    @torch.no_grad()
    def encode(self, history: Trajectories) -> Belief:
        """Belief at the last valid time of each history (histories of any length)."""
        network, _ = self._ready()
        self.action_space.validate(history.actions, "history actions",
                                   mask=torch.isfinite(history.times)[..., None]
                                   .expand_as(history.actions))
        lengths = history.lengths
        if (lengths < 1).any():
            i = int(torch.nonzero(lengths < 1)[0, 0])
            raise InvalidInputError(f"history of subject {history.subject_ids[i]!r} is empty")
        seq = self._sequences(history)
        every, s = network.encode_all(seq.obs, seq.mask, seq.prev_actions, seq.dt, seq.static)
        rows = torch.arange(len(history))
        end = lengths - 1
        return Belief({"z": every[rows, end], "static_embedding": s,
                       "last_obs": seq.last[rows, end]})

    @torch.no_grad()
    def _moments(self, belief: Belief, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Calibrated mean and sd `[B, H, D]` on the (log-)transformed scale."""
        network, norm = self._ready()
        steps = actions.shape[1]
        if steps > self.config.horizon_steps:
            raise InvalidInputError(
                f"horizon of {steps} steps exceeds the trained {self.config.horizon_steps}"
            )
        self.action_space.validate(actions, "actions")
        mean, log_sd = network.rollout(
            belief.tensors["z"], belief.tensors["static_embedding"], belief.tensors["last_obs"],
            norm.actions(actions.float()), torch.ones(actions.shape[0], steps, 1),
        )
        sd = log_sd.exp() * self.scale[:steps]
        return mean * norm.obs_sd + norm.obs_mean, sd * norm.obs_sd

    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 100,
                seed: int = 0) -> Forecast:
        if not isinstance(n_samples, int) or n_samples < 1:
            raise InvalidInputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if (actions.dim() != 3 or actions.shape[0] != len(belief) or actions.shape[1] < 1
                or actions.shape[2] != len(self.action_space)):
            raise InvalidInputError(
                f"actions must be [{len(belief)}, H >= 1, {len(self.action_space)}], got "
                f"{tuple(actions.shape)}"
            )
        mean, sd = self._moments(belief, actions)
        noise = correlated_normal(n_samples, tuple(mean.shape), self.rho,
                                  torch.Generator().manual_seed(seed))
        samples = self._untransform(mean[None] + sd[None] * noise)
        steps = actions.shape[1]
        times = self.step * torch.arange(1, steps + 1).expand(mean.shape[0], -1).float()
        index = self._log_index()
        expected = mean.clone()  # closed-form mean: lognormal on the log channels ...
        if self.config.raw_mse_weight == 0:  # ... unless trained to be the mean on raw scale
            expected[..., index] = expected[..., index] + 0.5 * sd[..., index] ** 2
        return Forecast(samples=samples, times=times, space=self.obs_space,
                        extras={"mean": self._untransform(expected)})

    # ----- persistence --------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        network, norm = self._ready()
        tensors = {f"net.{k}": v for k, v in network.state_dict().items()}
        tensors |= {f"norm.{k}": v.float() for k, v in norm.tensors().items()}
        return tensors | {"calibration.scale": self.scale, "calibration.rho": self.rho}

    def config_dict(self) -> dict[str, Any]:
        return {
            "model_class": "sequence", "sequence": asdict(self.config),
            "train": self.train_config.to_dict(), "step": self.step,
            "time_unit": self.time_unit, "obs_space": self.obs_space.to_dict(),
            "action_space": self.action_space.to_dict(),
            "static_space": self.static_space.to_dict(),
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        config = self.config_dict()
        manifest = Manifest.create("model", config | self.provenance, seed=self.config.seed)
        title = f"Sequence world model (deconfounding: {self.config.deconfounding})"
        save_model_dir(directory, config, self.state_tensors(), manifest,
                       _card(title, config | {"latent": asdict(self.config)}, manifest, self))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SequenceWorldModel:
        config, tensors, manifest = load_model_dir(directory)
        if config.get("model_class") != "sequence":
            raise InvalidInputError(
                f"{directory}: not a sequence model ({config.get('model_class')})"
            )
        model = cls(SequenceConfig(**config["sequence"]), TrainConfig(**config["train"]))
        model.obs_space = Space.from_dict(config["obs_space"])
        model.action_space = Space.from_dict(config["action_space"])
        model.static_space = Space.from_dict(config["static_space"])
        model.step, model.time_unit = float(config["step"]), config["time_unit"]
        model.normaliser = Normaliser.from_tensors(
            {k[5:]: v for k, v in tensors.items() if k.startswith("norm.")}, model.step
        )
        cfg = model.config
        model.network = LatentNetwork(
            len(model.obs_space), 2 * len(model.action_space), len(model.static_space),
            LatentConfig(latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim,
                         static_dim=cfg.static_dim),
        )
        model.network.load_state_dict({k[4:]: v for k, v in tensors.items()
                                       if k.startswith("net.")})
        model.network.eval()
        model.scale, model.rho = tensors["calibration.scale"], tensors["calibration.rho"]
        model.provenance = {k: v for k, v in manifest.config.items() if k not in config}
        return model


def _propensity_inputs(seq: _Sequences) -> torch.Tensor:
    """What the propensity model sees: the encoder's inputs, static covariates appended."""
    return seq.encoder_inputs(seq.static)

"""Latent sequence world model: irregular history -> latent belief -> action-driven rollout.

- Encoder: a GRU over the history, fed each step's (normalised) observations with their
  missingness mask, the actions taken, the time elapsed since the previous step and the
  static covariates; its final state is the latent belief about the subject now.
- Transition: a GRU cell that moves the latent one step under the action taken and the
  step length (so irregular future grids are expressible).
- Decoder: an MLP giving a Gaussian (mean relative to the last observed value, and a log
  standard deviation) for the observations after each step.
Training is by multi-step "overshooting" likelihood: from each window's origin the latent
is rolled out over the whole horizon with the logged future actions and every step's
Gaussian likelihood counts, so the model is trained exactly as it is used in planning and
long open-loop rollouts stay sane. After training, the predictive spread is calibrated on
validation windows (`calibration.py`).

Actions enter twice, linearly scaled and through log1p: dosing data mixes a small steady
rate with rare large boluses, and the network needs both "how much" (linear, so a doubled
dose is a doubled input) and a well-conditioned view of the common small values.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories, trajectories_sha256
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.calibration import error_correlation, spread_scale
from biowm.models.card import model_card
from biowm.models.noise import correlated_normal
from biowm.models.registry import register_model
from biowm.models.training import TrainConfig, train_module
from biowm.models.windows import Windows, make_windows, select_obs

LOG_SD_MIN, LOG_SD_MAX = -5.0, 3.0


@dataclass
class LatentConfig:
    """Architecture and data settings of one latent model (training settings separate)."""

    history_steps: int = 48
    horizon_steps: int = 24
    obs_channels: list[str] | None = None
    latent_dim: int = 64
    hidden_dim: int = 128
    static_dim: int = 16
    stride: int = 3
    use_static: bool = True
    seed: int = 0


class LatentNetwork(nn.Module):
    """Encoder GRU, transition GRU cell and Gaussian decoder (all sizes from the config)."""

    def __init__(self, n_obs: int, n_action_features: int, n_static: int, cfg: LatentConfig):
        super().__init__()
        self.n_obs = n_obs
        self.static_net = nn.Sequential(nn.Linear(max(n_static, 1), cfg.static_dim), nn.Tanh())
        encoder_in = 2 * n_obs + n_action_features + 1 + cfg.static_dim
        self.encoder = nn.GRU(encoder_in, cfg.latent_dim, batch_first=True)
        self.transition = nn.GRUCell(n_action_features + 1 + cfg.static_dim, cfg.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(cfg.latent_dim + n_obs + cfg.static_dim, cfg.hidden_dim), nn.SiLU(),
            nn.Linear(cfg.hidden_dim, cfg.hidden_dim), nn.SiLU(),
            nn.Linear(cfg.hidden_dim, 2 * n_obs),
        )

    def encode(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor, dt: torch.Tensor,
        static: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent `[B, Z]` and static embedding `[B, E]` from a history `[B, L, ...]`."""
        every, s = self.encode_all(obs, mask, actions, dt, static)
        return every[:, -1], s

    def encode_all(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor, dt: torch.Tensor,
        static: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent after every history step `[B, L, Z]` (causal) and the static embedding."""
        s = self.static_net(static)
        steps = obs.shape[1]
        inputs = torch.cat(
            [obs * mask, mask, actions, dt, s[:, None, :].expand(-1, steps, -1)], dim=2
        )
        every, _ = self.encoder(inputs)
        return every, s

    def rollout(
        self, z: torch.Tensor, static_embedding: torch.Tensor, last_obs: torch.Tensor,
        actions: torch.Tensor, dt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian mean and log-sd `[B, H, D]` (normalised units) over the horizon."""
        means, log_sds = [], []
        for k in range(actions.shape[1]):
            z = self.transition(torch.cat([actions[:, k], dt[:, k], static_embedding], 1), z)
            out = self.decoder(torch.cat([z, last_obs, static_embedding], dim=1))
            means.append(last_obs + out[:, : self.n_obs])
            log_sds.append(out[:, self.n_obs :].clamp(LOG_SD_MIN, LOG_SD_MAX))
        return torch.stack(means, dim=1), torch.stack(log_sds, dim=1)


@dataclass
class Normaliser:
    """Per-channel scalings learned from training windows (stored with the weights)."""

    obs_mean: torch.Tensor
    obs_sd: torch.Tensor
    action_linear_scale: torch.Tensor
    action_log_scale: torch.Tensor
    static_mean: torch.Tensor
    static_sd: torch.Tensor
    step: float

    @classmethod
    def fit(cls, windows: Windows, step: float) -> Normaliser:
        return cls.from_values(windows.history.obs, windows.history.mask,
                               windows.future_actions, windows.history.static, step)

    @classmethod
    def from_values(cls, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor,
                    static: torch.Tensor, step: float) -> Normaliser:
        """Scalings from observations `[..., D]` with their mask, actions `[..., A]` (the
        entries to scale by) and static covariates `[B, S]`."""
        obs = torch.where(mask, obs, torch.zeros_like(obs)).reshape(-1, obs.shape[-1])
        mask = mask.reshape(-1, mask.shape[-1])
        counts = mask.sum(dim=0).clamp(min=1)
        mean = obs.sum(dim=0) / counts
        sd = (((obs - mean) ** 2 * mask).sum(dim=0) / counts).sqrt().clamp(min=1e-3)
        actions = actions.reshape(-1, actions.shape[-1])
        linear = torch.quantile(actions.abs().float(), 0.99, dim=0).clamp(min=1e-6)
        positive = torch.where(actions > 0, actions, torch.nan)
        log_scale = torch.nan_to_num(torch.nanmedian(positive, dim=0).values, nan=1.0)
        return cls(
            obs_mean=mean, obs_sd=sd, action_linear_scale=linear,
            action_log_scale=log_scale.clamp(min=1e-6),
            static_mean=static.mean(dim=0) if len(static) else torch.zeros(static.shape[1]),
            static_sd=static.std(dim=0).clamp(min=1e-3) if len(static) > 1
            else torch.ones(static.shape[1]),
            step=step,
        )

    def obs(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.obs_mean) / self.obs_sd

    def actions(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clamp(min=0.0)
        return torch.cat(
            [values / self.action_linear_scale, torch.log1p(values / self.action_log_scale)],
            dim=-1,
        )

    def static(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.static_mean) / self.static_sd

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, torch.Tensor)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], step: float) -> Normaliser:
        names = [f for f in cls.__dataclass_fields__ if f != "step"]
        return cls(**{n: tensors[n] for n in names}, step=step)


@register_model("latent")
class LatentWorldModel:
    """One latent sequence world model (see module docstring); `DeepEnsemble` combines K."""

    def __init__(self, config: LatentConfig | None = None, train: TrainConfig | None = None,
                 **overrides: Any) -> None:
        self.config = config or LatentConfig(**overrides)
        self.train_config = train or TrainConfig(seed=self.config.seed)
        self.network: LatentNetwork | None = None
        self.normaliser: Normaliser | None = None
        self.obs_space = Space()
        self.action_space = Space()
        self.static_space = Space()
        self.step = 0.0
        self.scale = torch.ones(self.config.horizon_steps, 1)
        self.rho = torch.zeros(1)
        self.provenance: dict[str, Any] = {}

    # ----- data ---------------------------------------------------------------------------
    def windows(self, data: Trajectories, stride: int | None = None) -> Windows:
        channels = self.config.obs_channels or data.obs_space.names
        return make_windows(
            select_obs(data, channels), self.config.history_steps, self.config.horizon_steps,
            stride or self.config.stride,
        )

    def _history_tensors(self, history: Trajectories) -> list[torch.Tensor]:
        assert self.normaliser is not None
        norm = self.normaliser
        channels = [history.obs_space.index(c) for c in self.obs_space.names]
        length = self.config.history_steps
        if history.times.shape[1] < length:
            raise InvalidInputError(
                f"history has {history.times.shape[1]} steps; this model needs {length}"
            )
        times = history.times[:, -length:].float()
        if not torch.isfinite(times).all():
            raise InvalidInputError(
                "history must end with its last valid time point (no padding at the end)"
            )
        mask = history.mask[:, -length:][..., channels]
        obs = torch.where(mask, history.obs[:, -length:][..., channels], 0.0).float()
        mask = mask.float()
        actions = norm.actions(history.actions[:, -length:].float())
        dt = torch.diff(times, dim=1, prepend=times[:, :1] - norm.step)[..., None] / norm.step
        last = _last_observed(norm.obs(obs), mask)
        static = norm.static(history.static.float())
        if not self.config.use_static:  # infer the subject from its history alone
            static = torch.zeros_like(static)
        return [norm.obs(obs) * mask, mask, actions, dt, static, last]

    def _training_tensors(self, windows: Windows) -> list[torch.Tensor]:
        assert self.normaliser is not None
        history = self._history_tensors(windows.history)
        future = self.normaliser.actions(windows.future_actions.float())
        observed = windows.future_mask
        target = torch.where(observed, self.normaliser.obs(windows.future_obs.float()), 0.0)
        return [*history, future, target, observed.float()]

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        assert self.network is not None
        obs, mask, actions, dt, static, last, future, target, target_mask = batch
        z, s = self.network.encode(obs, mask, actions, dt, static)
        ones = torch.ones(future.shape[0], future.shape[1], 1)
        mean, log_sd = self.network.rollout(z, s, last, future, ones)
        nll = 0.5 * ((target - mean) / log_sd.exp()) ** 2 + log_sd
        return (nll * target_mask).sum() / target_mask.sum().clamp(min=1.0)

    # ----- WorldModel protocol ------------------------------------------------------------
    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        """Train on `train` windows, early-stop and calibrate on `val` windows."""
        train_w, val_w = self.windows(train), self.windows(val)
        if len(train_w) == 0 or len(val_w) == 0:
            raise InvalidInputError("not enough data for one training and one validation window")
        self.obs_space = train_w.history.obs_space
        self.action_space = train.action_space
        self.static_space = train.static_space
        self.step = float(torch.nanmedian(torch.diff(train.times[0])).item())
        torch.manual_seed(self.config.seed)
        self.normaliser = Normaliser.fit(train_w, self.step)
        self.network = LatentNetwork(
            len(self.obs_space), 2 * len(self.action_space), len(self.static_space), self.config
        )
        self.train_config.update(options)
        self.train_config.seed = self.config.seed
        report = train_module(
            self.network, self._loss, self._training_tensors(train_w),
            self._training_tensors(val_w), self.train_config,
        )
        self.calibrate(val_w)
        self.provenance = {
            "n_train_windows": len(train_w), "n_val_windows": len(val_w),
            "best_val_nll": round(report.best_val_loss, 4), "epochs": report.epochs,
            "training_data_sha256": {"train": trajectories_sha256(train),
                                     "val": trajectories_sha256(val)},
        }
        return report

    @torch.no_grad()
    def moments(self, belief: Belief, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uncalibrated predictive mean and sd `[B, H, D]` in the observations' units."""
        network, norm = self._ready()
        steps = actions.shape[1]
        if steps > self.config.horizon_steps:
            raise InvalidInputError(
                f"horizon of {steps} steps exceeds the trained {self.config.horizon_steps}"
            )
        self.action_space.validate(actions, "actions")
        future = norm.actions(actions.float())
        ones = torch.ones(actions.shape[0], steps, 1)
        mean, log_sd = network.rollout(
            belief.tensors["z"], belief.tensors["static_embedding"], belief.tensors["last_obs"],
            future, ones,
        )
        return mean * norm.obs_sd + norm.obs_mean, log_sd.exp() * norm.obs_sd

    @torch.no_grad()
    def encode(self, history: Trajectories) -> Belief:
        network, _ = self._ready()
        obs, mask, actions, dt, static, last = self._history_tensors(history)
        z, s = network.encode(obs, mask, actions, dt, static)
        return Belief({"z": z, "static_embedding": s, "last_obs": last})

    @torch.no_grad()
    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 100,
                seed: int = 0) -> Forecast:
        mean, sd = self.moments(belief, actions)
        steps = actions.shape[1]
        sd = sd * self.scale[:steps]
        noise = correlated_normal(n_samples, tuple(mean.shape), self.rho,
                                  torch.Generator().manual_seed(seed))
        samples = mean[None] + sd[None] * noise
        times = self.step * torch.arange(1, steps + 1).expand(mean.shape[0], -1).float()
        return Forecast(samples=samples, times=times, space=self.obs_space,
                        extras={"mean": mean})

    def calibrate(self, val: Windows) -> None:
        belief = self.encode(val.history)
        mean, sd = self.moments(belief, val.future_actions)
        self.scale = spread_scale(mean, sd, val.future_obs.float(), val.future_mask)
        self.rho = error_correlation(mean, sd * self.scale, val.future_obs.float(),
                                     val.future_mask)

    def _ready(self) -> tuple[LatentNetwork, Normaliser]:
        if self.network is None or self.normaliser is None:
            raise InvalidInputError("the model is not trained: call fit() or load() first")
        return self.network, self.normaliser

    # ----- persistence --------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        network, norm = self._ready()
        tensors = {f"net.{k}": v for k, v in network.state_dict().items()}
        tensors |= {f"norm.{k}": v for k, v in norm.tensors().items()}
        tensors |= {"calibration.scale": self.scale, "calibration.rho": self.rho}
        return tensors

    def config_dict(self) -> dict[str, Any]:
        return {
            "model_class": "latent", "latent": asdict(self.config),
            "train": self.train_config.to_dict(), "step": self.step,
            "obs_space": self.obs_space.to_dict(), "action_space": self.action_space.to_dict(),
            "static_space": self.static_space.to_dict(),
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   prefix: str = "") -> LatentWorldModel:
        model = cls(LatentConfig(**config["latent"]), TrainConfig(**config["train"]))
        model.obs_space = Space.from_dict(config["obs_space"])
        model.action_space = Space.from_dict(config["action_space"])
        model.static_space = Space.from_dict(config["static_space"])
        model.step = float(config["step"])
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        model.normaliser = Normaliser.from_tensors(
            {k[5:]: v for k, v in own.items() if k.startswith("norm.")}, model.step
        )
        model.network = LatentNetwork(len(model.obs_space), 2 * len(model.action_space),
                                      len(model.static_space), model.config)
        model.network.load_state_dict({k[4:]: v for k, v in own.items() if k.startswith("net.")})
        model.network.eval()
        model.scale, model.rho = own["calibration.scale"], own["calibration.rho"]
        return model

    def save(self, directory: str | os.PathLike[str]) -> None:
        config = self.config_dict()
        manifest = Manifest.create("model", config | self.provenance, seed=self.config.seed)
        save_model_dir(directory, config, self.state_tensors(), manifest,
                       _card("Latent sequence world model", config, manifest, self))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LatentWorldModel:
        config, tensors, _ = load_model_dir(directory)
        if config.get("model_class") != "latent":
            raise InvalidInputError(
                f"{directory}: not a latent model ({config.get('model_class')})"
            )
        return cls.from_state(config, tensors)


def _last_observed(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last observed value per subject and channel `[B, D]` (0 = the mean if never observed)."""
    steps = torch.arange(1, obs.shape[1] + 1, dtype=obs.dtype)[None, :, None]
    last = (mask * steps).argmax(dim=1, keepdim=True)
    return obs.gather(1, last)[:, 0] * (mask.sum(dim=1) > 0)


def _card(title: str, config: dict[str, Any], manifest: Manifest, model: Any) -> str:
    spaces = ", ".join(f"{c.name} [{c.low}, {c.high}] {c.unit}" for c in model.obs_space)
    actions = ", ".join(f"{c.name} [{c.low}, {c.high}] {c.unit}" for c in model.action_space)
    return model_card(
        title, config, manifest,
        context_of_use=(
            "Research use: forecasting observations under candidate action sequences for "
            "planning and evaluation in simulation. Not a medical device; not for dosing "
            "real patients."
        ),
        validation_domain=(
            f"Observations: {spaces}. Actions: {actions}. "
            + (f"Histories of {config['latent']['history_steps']} steps"
               if "history_steps" in config.get("latent", {}) else "Histories of any length")
            + f" of {config['step']:g} {config.get('time_unit', 'min')}; horizons up to "
            f"{config.get('latent', {}).get('horizon_steps', '?')} steps. Outside the "
            "training distribution of subjects and actions the forecasts and their "
            "uncertainty are not validated."
        ),
        limitations=[
            "Learned from simulated or logged behaviour-policy data: action combinations "
            "never logged are extrapolated.",
            "Predictive intervals are calibrated on validation windows of the training "
            "population; coverage on a shifted population is not guaranteed.",
        ],
        metrics={k: v for k, v in model.provenance.items() if k != "training_data_sha256"},
    )

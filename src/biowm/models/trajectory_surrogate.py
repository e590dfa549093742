"""A fast, non-recurrent surrogate of a simulator's whole trajectory on a fixed time grid.

Built to replace a mechanistic simulator (e.g. an SBML model in libroadrunner) where it
is run thousands of times: one feed-forward pass maps the static covariates (a virtual
cell's parameter draws) and the action in effect at every grid time (a dose schedule) to
the full trajectory `[T, D]` — no time stepping, so a batch of 10,000 trajectories is a
few matrix products. Parts:

- **inputs**: static covariates scaled by their training spread, a "known" flag, and
  per action channel both the dose over its range and a log-dose feature (dose-responses
  are usually log-linear near their IC50);
- **output**: a Gaussian per grid time and channel (mean, sd) in per-channel standardised
  units, trained by Gaussian negative log-likelihood through the shared trainer;
- **population forecast**: during training a fraction of rows have their covariates
  hidden (zeroed, flag 0), so the same network also forecasts the population given only
  the schedule — what a user gets who does not know a cell's parameters;
- **ensemble**: independently seeded members, evaluated together as batched matrix
  products; the predictive is their mixture; the spread is then scaled per grid time and
  channel on validation data so that 90 % intervals cover 90 % (separately for known and
  hidden covariates); sampled paths carry AR(1)-correlated errors along time.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import load_model_dir, save_model_dir
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.calibration import error_correlation, spread_scale
from biowm.models.card import model_card
from biowm.models.noise import correlated_normal
from biowm.models.registry import register_model
from biowm.models.training import TrainConfig, train_module

_MIN_SD = 1e-4
_LOG_DOSE_STEPS = 100.0  # log-dose feature resolves doses down to 1 % of the range


@dataclass
class SurrogateConfig:
    hidden: int = 512
    layers: int = 3
    members: int = 3
    hide_static: float = 0.25  # fraction of training rows whose covariates are hidden
    max_epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 2e-3
    patience: int = 15
    basis: int = 32  # > 0: outputs are coefficients of this many temporal PCA modes/channel
    seed: int = 0
    progress: bool = True


class _Member(torch.nn.Module):
    def __init__(self, inputs: int, outputs: int, hidden: int, layers: int) -> None:
        super().__init__()
        sizes = [inputs] + [hidden] * layers
        blocks: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            blocks += [torch.nn.Linear(a, b), torch.nn.SiLU()]
        blocks.append(torch.nn.Linear(hidden, 2 * outputs))
        self.net = torch.nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _stack(members: list[_Member]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each linear layer's weights across members: `([M, in, out], [M, 1, out])`."""
    linears = [[m for m in member.net if isinstance(m, torch.nn.Linear)] for member in members]
    return [(torch.stack([layer[i].weight.detach().T for layer in linears]),
             torch.stack([layer[i].bias.detach()[None] for layer in linears]))
            for i in range(len(linears[0]))]


@register_model("trajectory_surrogate")
class TrajectorySurrogate:
    """Whole-trajectory surrogate conditioned on static covariates and an action schedule."""

    def __init__(self, config: SurrogateConfig | None = None) -> None:
        self.config = config or SurrogateConfig()
        self.obs_space: Space | None = None
        self.action_space: Space | None = None
        self.static_space: Space | None = None
        self.grid: torch.Tensor | None = None
        self.tensors: dict[str, torch.Tensor] = {}
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.time_unit = ""
        self.provenance: dict[str, Any] = {}  # how the training data were made (saved too)

    @property
    def step(self) -> float:
        """Spacing of the trained grid (actions are given at every grid time); 0 unfitted."""
        if self.grid is None or self.grid.numel() < 2:
            return 0.0
        return float((self.grid[1:] - self.grid[:-1]).median())

    # ---------------------------------------------------------------- features
    def _features(self, static: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        """`[B, P + 1 + 2·T·A]` inputs; `static=None` (or NaN rows) = covariates unknown."""
        t = self.tensors
        b = actions.shape[0]
        p = t["static_scale"].numel()
        if static is None:
            static = torch.full((b, p), torch.nan)
        known = torch.isfinite(static).all(dim=1, keepdim=True)
        scaled = torch.where(known, static.float() / t["static_scale"], 0.0)
        high = t["action_high"]
        fraction = actions.float() / high
        log_dose = torch.log1p(_LOG_DOSE_STEPS * fraction.clamp_min(0.0)) / math.log1p(
            _LOG_DOSE_STEPS)
        return torch.cat([scaled, known.float(), fraction.reshape(b, -1),
                          log_dose.reshape(b, -1)], dim=1)

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Members' standardised means and sds `[M, B, T, D]` (one batched pass)."""
        h = x[None].expand(len(self.layers[0][0]), -1, -1)
        for i, (weight, bias) in enumerate(self.layers):
            h = torch.baddbmm(bias, h, weight)
            if i < len(self.layers) - 1:
                h = torch.nn.functional.silu(h)
        mean, raw = self._decode(h).unbind(dim=-3)
        return mean, torch.nn.functional.softplus(raw) + _MIN_SD

    def _decode(self, h: torch.Tensor) -> torch.Tensor:
        """Network outputs `[..., 2·T·D]` (or `[..., 2·D·k]` basis coefficients) to
        `[..., 2, T, D]`: mean and raw sd per grid time and channel."""
        t, d = self.grid.numel(), len(self.obs_space.names)
        basis = self.tensors.get("basis")
        if basis is None:
            return h.reshape(*h.shape[:-1], 2, t, d)
        coefficients = h.reshape(*h.shape[:-1], 2, d, basis.shape[1])
        return torch.einsum("...zdk,dkt->...ztd", coefficients, basis)

    def _fit_basis(self, y: torch.Tensor) -> None:
        """Leading temporal modes of each channel's standardised training trajectories."""
        k = self.config.basis
        if not 0 < k < self.grid.numel():
            self.tensors.pop("basis", None)
            return
        modes = [torch.linalg.svd(y[:, :, c], full_matrices=False)[2][:k]
                 for c in range(y.shape[2])]
        self.tensors["basis"] = torch.stack(modes).contiguous()

    # ---------------------------------------------------------------- fitting
    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        """Train the members on trajectories sharing one time grid (failed runs dropped)."""
        cfg = self.config
        for key, value in options.items():
            if not hasattr(cfg, key):
                raise InvalidInputError(f"unknown surrogate option {key!r}; options are "
                                        f"{sorted(asdict(cfg))}")
            setattr(cfg, key, value)
        train, val = _complete(train, "training"), _complete(val, "validation")
        if not torch.equal(train.times[0], val.times[0]):
            raise InvalidInputError("training and validation trajectories need the same grid")
        self.obs_space, self.action_space = train.obs_space, train.action_space
        self.static_space, self.time_unit = train.static_space, train.time_unit
        self.grid = train.times[0].float()
        obs = train.obs.float()
        high = torch.tensor([c.high if c.high is not None and math.isfinite(c.high) and
                             c.high > 0 else 1.0 for c in train.action_space.channels])
        high = torch.maximum(high, train.actions.abs().amax(dim=(0, 1)).clamp_min(1e-12)) \
            if train.actions.numel() else high
        static_scale = train.static.float().std(dim=0) if train.static.shape[1] else \
            torch.zeros(0)
        self.tensors = {
            "grid": self.grid,
            "obs_mean": obs.mean(dim=(0, 1)),
            "obs_sd": obs.std(dim=(0, 1)).clamp_min(1e-8),
            # Channels never negative in training (concentrations) are never predicted so.
            "obs_floor": torch.where(obs.amin(dim=(0, 1)) >= 0, 0.0, -torch.inf),
            "action_high": high,
            "static_scale": torch.where(static_scale > 0, static_scale, 1.0),
        }
        generator = torch.Generator().manual_seed(cfg.seed)
        hide = torch.rand(len(train), generator=generator) < cfg.hide_static
        static_train = torch.where(hide[:, None], torch.nan, train.static.float())
        x_train = self._features(static_train, train.actions)
        y_train = self._standardise(train.obs)
        x_val = self._features(val.static.float(), val.actions)
        y_val = self._standardise(val.obs)
        t, d = self.grid.numel(), len(self.obs_space.names)
        self._fit_basis(y_train)
        outputs = d * self.tensors["basis"].shape[1] if "basis" in self.tensors else t * d
        members, reports = [], []
        for k in range(cfg.members):
            member = _Member(x_train.shape[1], outputs, cfg.hidden, cfg.layers)

            def loss(batch: list[torch.Tensor], member: _Member = member) -> torch.Tensor:
                out = self._decode(member(batch[0]))
                sd = torch.nn.functional.softplus(out[:, 1]) + _MIN_SD
                error = batch[1] - out[:, 0]
                # The mean fits squared error (a Gaussian likelihood lets hard stretches
                # hide behind a wide sd); the sd fits the likelihood of that error.
                spread = torch.log(sd) + 0.5 * (error.detach() / sd) ** 2
                return (error**2 + spread).mean()

            train_config = TrainConfig(
                max_epochs=cfg.max_epochs, batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate, patience=cfg.patience,
                lr_schedule="cosine", seed=cfg.seed * 100 + k, progress=cfg.progress,
                description=f"surrogate member {k + 1}/{cfg.members}")
            reports.append(train_module(member, loss, [x_train, y_train], [x_val, y_val],
                                        train_config))
            members.append(member)
        self.layers = _stack(members)
        self._calibrate(val)
        return FitReport(epochs=max(r.epochs for r in reports),
                         best_val_loss=float(sum(r.best_val_loss for r in reports) / len(reports)),
                         stopped_because=reports[0].stopped_because,
                         history=[h for r in reports for h in r.history])

    def _standardise(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.float() - self.tensors["obs_mean"]) / self.tensors["obs_sd"]

    def _calibrate(self, val: Trajectories) -> None:
        """Spread scale and error correlation per grid time and channel, known and hidden."""
        mask = torch.ones_like(val.obs, dtype=torch.bool)
        for mode in ("known", "hidden"):
            self.tensors[f"scale_{mode}"] = torch.ones(self.grid.numel(),
                                                       len(self.obs_space.names))
        # In standardised units: spread_scale floors sds at 1e-6, far above the sd of a
        # species measured in, say, 1e-5 µM. It caps one pass at 20×; near-deterministic
        # species can need more, so the factor is refined until it settles.
        scale = self.tensors["obs_sd"]
        truth = val.obs.float() / scale
        for mode, static in (("known", val.static.float()), ("hidden", None)):
            for _ in range(4):
                mean, sd = self.predictive(static, val.actions)
                self.tensors[f"scale_{mode}"] = self.tensors[f"scale_{mode}"] * spread_scale(
                    mean / scale, sd / scale, truth, mask)
            mean, sd = self.predictive(static, val.actions)
            self.tensors[f"rho_{mode}"] = error_correlation(mean / scale, sd / scale, truth,
                                                            mask)

    # ---------------------------------------------------------------- prediction
    def _require_fitted(self) -> None:
        if not self.layers:
            raise InvalidInputError("fit or load the surrogate first")

    def _check(self, static: torch.Tensor | None, actions: torch.Tensor) -> None:
        t, a = self.grid.numel(), len(self.action_space.names)
        if actions.ndim != 3 or actions.shape[1:] != (t, a):
            raise InvalidInputError(f"actions must be [batch, {t} grid times, {a} channels "
                                    f"({', '.join(self.action_space.names)})], got "
                                    f"{list(actions.shape)}")
        p = len(self.static_space.names)
        if static is not None and (static.ndim != 2 or static.shape != (len(actions), p)):
            raise InvalidInputError(f"static covariates must be [batch, {p}], got "
                                    f"{list(static.shape)}")

    @torch.no_grad()
    def member_moments(self, static: torch.Tensor | None, actions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and sd `[M, B, T, D]` in the observation units."""
        self._require_fitted()
        self._check(static, actions)
        mean, sd = self._moments(self._features(static, actions))
        return (mean * self.tensors["obs_sd"] + self.tensors["obs_mean"],
                sd * self.tensors["obs_sd"])

    @torch.no_grad()
    def predictive(self, static: torch.Tensor | None, actions: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated mixture mean and sd `[B, T, D]`; rows of `static` that are None/NaN
        get the population forecast."""
        mean, sd = self.member_moments(static, actions)
        mixture_mean = mean.mean(dim=0)
        variance = (sd**2).mean(dim=0) + mean.var(dim=0, unbiased=False)
        known = torch.zeros(len(actions), dtype=torch.bool) if static is None else \
            torch.isfinite(static).all(dim=1)
        scale = torch.where(known[:, None, None], self.tensors["scale_known"],
                            self.tensors["scale_hidden"])
        return torch.maximum(mixture_mean, self.tensors["obs_floor"]), variance.sqrt() * scale

    @torch.no_grad()
    def epistemic_sd(self, static: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        """Members' disagreement `[B, T, D]`: where the surrogate is unsure of itself."""
        mean, _ = self.member_moments(static, actions)
        return mean.std(dim=0, unbiased=False)

    def sample(self, static: torch.Tensor | None, actions: torch.Tensor, n_samples: int,
               seed: int = 0) -> torch.Tensor:
        """Sampled trajectories `[S, B, T, D]`: calibrated Gaussian paths with AR(1) errors."""
        mean, sd = self.predictive(static, actions)
        known = torch.zeros(len(actions), dtype=torch.bool) if static is None else \
            torch.isfinite(static).all(dim=1)
        generator = torch.Generator().manual_seed(seed)
        shape = tuple(mean.shape)
        noise = torch.where(known[None, :, None, None],
                            correlated_normal(n_samples, shape, self.tensors["rho_known"],
                                              generator),
                            correlated_normal(n_samples, shape, self.tensors["rho_hidden"],
                                              generator))
        return torch.maximum(mean[None] + sd[None] * noise, self.tensors["obs_floor"])

    # ---------------------------------------------------------------- WorldModel protocol
    def encode(self, history: Trajectories) -> Belief:
        """The belief is the static covariates (NaN where unknown): the surrogate forecasts
        from the simulator's initial state over its trained grid."""
        self._require_fitted()
        p = len(self.static_space.names)
        static = history.static.float() if history.static.shape[1] == p else \
            torch.full((len(history), p), torch.nan)
        return Belief({"static": static})

    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 100,
                seed: int = 0) -> Forecast:
        """Trajectories under `actions [B, T, A]` on the grid; `extras["mean"]` is exact."""
        static = belief.tensors["static"]
        mean, sd = self.predictive(static, actions)
        samples = self.sample(static, actions, max(n_samples, 1), seed)
        return Forecast(samples, self.grid[None].expand(len(actions), -1), self.obs_space,
                        extras={"mean": mean, "sd": sd})

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str], manifest: Manifest | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        self._require_fitted()
        config = {"model_class": "trajectory_surrogate", "config": asdict(self.config),
                  "obs_space": self.obs_space.to_dict(),
                  "action_space": self.action_space.to_dict(),
                  "static_space": self.static_space.to_dict(), "time_unit": self.time_unit,
                  "provenance": self.provenance}
        tensors = dict(self.tensors)
        for i, (weight, bias) in enumerate(self.layers):
            tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"] = weight, bias
        manifest = manifest or Manifest.create("model", {"model": "trajectory_surrogate"},
                                               seed=self.config.seed)
        ranges = ", ".join(f"{c.name} ≤ {float(h):g}" for c, h in
                           zip(self.action_space, self.tensors["action_high"], strict=True))
        card = model_card(
            "biowm trajectory surrogate", config, manifest,
            context_of_use="Stand in for a mechanistic simulator over its trained time grid: "
            "thousands of trajectories under dose schedules in one batched pass, for "
            "screening and planning; verify chosen plans in the simulator.",
            validation_domain=f"grid 0–{float(self.grid[-1]):g} {self.time_unit} "
            f"({self.grid.numel()} points); actions "
            f"{ranges}; "
            f"{len(self.static_space.names)} static covariates within the training spread.",
            limitations=[
                "Forecasts start from the simulator's initial state; schedules must give the "
                "action at every grid time.",
                "Outside the trained dose ranges or covariate spread it extrapolates; the "
                "ensemble's disagreement (`epistemic_sd`) grows there but is no guarantee.",
                "Intervals are Gaussian per time and channel, calibrated on validation runs.",
            ],
            metrics=metrics)
        save_model_dir(directory, config, tensors, manifest, card)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TrajectorySurrogate:
        config, tensors, _ = load_model_dir(directory)
        if config.get("model_class") != "trajectory_surrogate":
            raise InvalidInputError(f"{directory} holds a {config.get('model_class')!r} model, "
                                    "not a trajectory surrogate")
        model = cls(SurrogateConfig(**config["config"]))
        model.obs_space = Space.from_dict(config["obs_space"])
        model.action_space = Space.from_dict(config["action_space"])
        model.static_space = Space.from_dict(config["static_space"])
        model.time_unit = config["time_unit"]
        model.provenance = config.get("provenance", {})
        count = sum(1 for name in tensors if name.endswith(".weight"))
        model.layers = [(tensors.pop(f"layer{i}.weight"), tensors.pop(f"layer{i}.bias"))
                        for i in range(count)]
        model.tensors = tensors
        model.grid = tensors["grid"]
        return model


def _complete(data: Trajectories, what: str) -> Trajectories:
    """Runs observed at every grid time (failed simulator runs are dropped)."""
    if len(data) == 0:
        raise InvalidInputError(f"no {what} trajectories")
    if not bool((data.times == data.times[0]).all()):
        raise InvalidInputError(f"{what} trajectories must share one time grid")
    complete = data.mask.all(dim=(1, 2)) & torch.isfinite(data.obs).all(dim=(1, 2))
    if not bool(complete.any()):
        raise InvalidInputError(f"no complete {what} trajectory (every run has gaps)")
    return data if bool(complete.all()) else data.select(torch.nonzero(complete).flatten())

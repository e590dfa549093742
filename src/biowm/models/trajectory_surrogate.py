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
  products; their mixture is scaled per grid time and channel on validation data so
  that 90 % intervals cover 90 % (separately for known and hidden covariates); the
  members' disagreement (`epistemic_sd`) says where the surrogate is unsure;
- **distilled student** (the fast path): one narrower network trained to reproduce the
  ensemble's calibrated mean and log-sd (as temporal-basis coefficients) on the training
  inputs and on new pairings of their covariates and schedules, then calibrated on its
  own; `predictive` and `sample` use it when present (`ensemble=True` asks for the
  members' mixture). Sampled paths carry AR(1)-correlated errors along time.
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
    basis: int = 48  # > 0: outputs are coefficients of this many temporal PCA modes/channel
    student_hidden: int = 384  # width of the distilled fast network; 0 = ensemble only
    student_layers: int = 3
    student_epochs: int = 60
    student_pairings: int = 1  # extra (covariates, schedule) re-pairings per training row
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


Layers = list[tuple[torch.Tensor, torch.Tensor]]


def _forward(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Stacked networks `[M, in, out]` applied to `x [B, in]` at once: `[M, B, out]`."""
    h = x[None].expand(len(layers[0][0]), -1, -1)
    for i, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight)
        if i < len(layers) - 1:
            h = torch.nn.functional.silu(h)
    return h


def _stack(members: list[_Member]) -> Layers:
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
        self.layers: Layers = []
        self.student: Layers = []
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
        mean, raw = self._decode(_forward(self.layers, x)).unbind(dim=-3)
        return mean, torch.nn.functional.softplus(raw) + _MIN_SD

    def _project(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of `_decode` for one stream: `[B, T, D]` to `[B, D·k]` (or `[B, T·D]`)."""
        basis = self.tensors.get("basis")
        if basis is None:
            return y.reshape(len(y), -1)
        return torch.einsum("btd,dkt->bdk", y, basis).reshape(len(y), -1)

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
        self.student = []
        self._calibrate(val)
        if cfg.student_hidden > 0:
            self.distil(train.static.float(), train.actions, val)
        return FitReport(epochs=max(r.epochs for r in reports),
                         best_val_loss=float(sum(r.best_val_loss for r in reports) / len(reports)),
                         stopped_because=reports[0].stopped_because,
                         history=[h for r in reports for h in r.history])

    def _standardise(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.float() - self.tensors["obs_mean"]) / self.tensors["obs_sd"]

    def _calibrate(self, val: Trajectories, prefix: str = "") -> None:
        """Spread scale and error correlation per grid time and channel, known and hidden,
        for the ensemble (`prefix=""`) or the student (`prefix="student_"`)."""
        mask = torch.ones_like(val.obs, dtype=torch.bool)
        for mode in ("known", "hidden"):
            self.tensors[f"{prefix}scale_{mode}"] = torch.ones(self.grid.numel(),
                                                               len(self.obs_space.names))
        # In standardised units: spread_scale floors sds at 1e-6, far above the sd of a
        # species measured in, say, 1e-5 µM. It caps one pass at 20×; near-deterministic
        # species can need more, so the factor is refined until it settles.
        scale = self.tensors["obs_sd"]
        truth = val.obs.float() / scale
        ensemble = prefix == ""
        for mode, static in (("known", val.static.float()), ("hidden", None)):
            for _ in range(4):
                mean, sd = self.predictive(static, val.actions, ensemble=ensemble)
                self.tensors[f"{prefix}scale_{mode}"] = self.tensors[f"{prefix}scale_{mode}"] \
                    * spread_scale(mean / scale, sd / scale, truth, mask)
            mean, sd = self.predictive(static, val.actions, ensemble=ensemble)
            self.tensors[f"{prefix}rho_{mode}"] = error_correlation(mean / scale, sd / scale,
                                                                    truth, mask)

    def _teacher_targets(self, static: torch.Tensor, actions: torch.Tensor,
                         chunk: int = 4096) -> torch.Tensor:
        """The ensemble's calibrated standardised mean and log-sd, in the student's output
        coordinates `[B, 2·D·k]`. The log keeps relative accuracy where the sd is tiny
        (e.g. at t = 0, where every cell starts alike): a linear sd there is noise-sized
        relative to the truth, and calibrating it blows up."""
        parts = []
        for start in range(0, len(actions), chunk):
            rows = slice(start, start + chunk)
            mean, sd = self.predictive(static[rows], actions[rows], ensemble=True)
            parts.append(torch.cat([self._project(self._standardise(mean)),
                                    self._project(torch.log(sd / self.tensors["obs_sd"]))],
                                   dim=1))
        return torch.cat(parts)

    def distil(self, static: torch.Tensor, actions: torch.Tensor, val: Trajectories) -> None:
        """Train the fast student on the ensemble's calibrated predictive, then calibrate it.

        Inputs are the training rows (covariates hidden at the training rate) plus
        `student_pairings` re-pairings of training covariates with other rows' schedules:
        new in-distribution inputs that need no simulator runs.
        """
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed + 7)
        n = len(actions)
        pick = torch.cat([torch.arange(n)] + [torch.randperm(n, generator=generator)
                                               for _ in range(cfg.student_pairings)])
        schedules = torch.arange(n).repeat(cfg.student_pairings + 1)
        hide = torch.rand(len(pick), generator=generator) < cfg.hide_static
        static_rows = torch.where(hide[:, None], torch.nan, static[pick])
        x_train = self._features(static_rows, actions[schedules])
        y_train = self._teacher_targets(static_rows, actions[schedules])
        half = torch.arange(len(val)) % 2 == 1  # half the validation rows hidden
        static_val = torch.where(half[:, None], torch.nan, val.static.float())
        x_val = self._features(static_val, val.actions)
        y_val = self._teacher_targets(static_val, val.actions)
        student = _Member(x_train.shape[1], y_train.shape[1] // 2, cfg.student_hidden,
                          cfg.student_layers)
        width = y_train.shape[1] // 2

        def loss(batch: list[torch.Tensor]) -> torch.Tensor:
            error = student(batch[0]) - batch[1]
            return (error[:, :width] ** 2).mean() + 0.5 * (error[:, width:] ** 2).mean()

        train_module(student, loss, [x_train, y_train], [x_val, y_val], TrainConfig(
            max_epochs=cfg.student_epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, patience=cfg.patience, lr_schedule="cosine",
            seed=cfg.seed * 100 + 99, progress=cfg.progress, description="distilled student"))
        self.student = _stack([student])
        self._calibrate(val, prefix="student_")

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
    def predictive(self, static: torch.Tensor | None, actions: torch.Tensor,
                   ensemble: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated mean and sd `[B, T, D]`; rows of `static` that are None/NaN get the
        population forecast. The distilled student answers when there is one (fast);
        `ensemble=True` asks for the members' mixture instead."""
        self._require_fitted()
        self._check(static, actions)
        x = self._features(static, actions)
        known = x[:, self.tensors["static_scale"].numel()] > 0.5
        if self.student and not ensemble and "basis" in self.tensors:
            return self._student_predictive(x, known)
        prefix = "" if ensemble or not self.student else "student_"
        if prefix:
            mean, log_sd = self._decode(_forward(self.student, x)[0]).unbind(dim=-3)
            sd = log_sd.exp()
        else:
            members_mean, members_sd = self._moments(x)
            mean = members_mean.mean(dim=0)
            sd = ((members_sd**2).mean(dim=0) + members_mean.var(dim=0, unbiased=False)
                  ).sqrt()
        scale = torch.where(known[:, None, None], self.tensors[f"{prefix}scale_known"],
                            self.tensors[f"{prefix}scale_hidden"])
        mean = torch.maximum(mean * self.tensors["obs_sd"] + self.tensors["obs_mean"],
                             self.tensors["obs_floor"])
        return mean, sd * scale * self.tensors["obs_sd"]

    def _student_predictive(self, x: torch.Tensor, known: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's calibrated mean and sd, decoded straight into observation units.

        The hot path of batch simulation: the unit change and the calibration factor are
        folded into the products' offsets and bases, so each of mean and log-sd is one
        batched product per channel (`[D, B, T]`), then floored or exponentiated in place
        (no new buffers), and returned as `[B, T, D]` views.
        """
        t = self.tensors
        basis = t["basis"]
        d, k = basis.shape[:2]
        coefficients = _forward(self.student, x)[0].reshape(len(x), 2, d, k).permute(1, 2, 0, 3)
        mean = torch.baddbmm(t["obs_mean"][:, None, None], coefficients[0],
                             basis * t["obs_sd"][:, None, None])

        def sd_for(mode: str) -> torch.Tensor:
            scale = t["obs_sd"][:, None, None] * t[f"student_scale_{mode}"].T[:, None]
            log_scale = torch.log(scale)
            return torch.baddbmm(log_scale, coefficients[1], basis).exp_()

        if bool(known.all()) or not bool(known.any()):
            sd = sd_for("known" if bool(known.all()) else "hidden")
        else:
            sd = torch.where(known[None, :, None], sd_for("known"), sd_for("hidden"))
        for channel in range(d):  # over channels, in place: no copy of the batch
            if bool(t["obs_floor"][channel] == 0):
                mean[channel].clamp_(min=0.0)
        return mean.permute(1, 2, 0), sd.permute(1, 2, 0)

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
        prefix = "student_" if self.student else ""
        noise = torch.where(known[None, :, None, None],
                            correlated_normal(n_samples, shape,
                                              self.tensors[f"{prefix}rho_known"], generator),
                            correlated_normal(n_samples, shape,
                                              self.tensors[f"{prefix}rho_hidden"], generator))
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
        for prefix, layers in (("layer", self.layers), ("student", self.student)):
            for i, (weight, bias) in enumerate(layers):
                tensors[f"{prefix}{i}.weight"], tensors[f"{prefix}{i}.bias"] = weight, bias
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
                "Batch predictions come from the distilled student (when trained), which "
                "imitates the ensemble and is calibrated on its own; `epistemic_sd` and "
                "`predictive(..., ensemble=True)` use the members.",
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
        model.layers, model.student = _pop_layers(tensors, "layer"), _pop_layers(tensors,
                                                                                 "student")
        model.tensors = tensors
        model.grid = tensors["grid"]
        return model


def _pop_layers(tensors: dict[str, torch.Tensor], prefix: str) -> Layers:
    count = sum(1 for name in tensors if name.startswith(prefix) and name.endswith(".weight"))
    return [(tensors.pop(f"{prefix}{i}.weight"), tensors.pop(f"{prefix}{i}.bias"))
            for i in range(count)]


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

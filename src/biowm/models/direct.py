"""Shared machinery of the direct multi-horizon baselines (`Persistence`, `LinearARX`).

A direct forecaster predicts all H future steps at once from the last `history_steps`
observations (plus, for subclasses that use them, actions and static covariates). Its
uncertainty is empirical: the root-mean-square error of the point forecast on validation
windows, per horizon step and channel, and the lag-one correlation of the standardised
errors along the horizon; `imagine` samples the point forecast plus Gaussian AR(1) noise
with those statistics (`noise.correlated_normal`).

Subclasses provide the point forecast (`_fit_point`, `_belief_extras`, `_point`) and
their own tensors and configuration; everything else (data checks, windowing, encoding,
calibration, sampling, versioned save/load and the model card) lives here, so the
baselines differ only where their forecasts differ.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest
from biowm.core.model_io import MODEL_FORMAT_VERSION, load_model_dir, save_model_dir
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories, trajectories_sha256
from biowm.core.world_model import Belief, FitReport, Forecast
from biowm.models.card import model_card
from biowm.models.noise import correlated_normal, lag_one_correlation
from biowm.models.windows import Windows, make_windows, pad_left, select_obs

_MIN_SD = 1e-8
# A history whose spacing strays further than this from the trained step is refused.
_STEP_TOLERANCE = 0.25


class DirectForecaster:
    """Base class: see the module docstring. Not a model by itself (it is not registered)."""

    model_name: ClassVar[str]
    title: ClassVar[str] = "direct forecaster"
    fit_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        history_steps: int = 24,
        horizon_steps: int = 24,
        obs_channels: Sequence[str] | None = None,
        seed: int = 0,
        stride: int = 3,
        pad_history: bool = False,
    ) -> None:
        for name, value in (("history_steps", history_steps), ("horizon_steps", horizon_steps),
                            ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        self.history_steps = history_steps
        self.horizon_steps = horizon_steps
        self.obs_channels = list(obs_channels) if obs_channels is not None else None
        self.seed = seed
        self.stride = stride
        self.pad_history = pad_history  # short histories padded as unobserved, not refused
        # Known once fitted (or loaded).
        self.obs_space = Space()
        self.action_space = Space()
        self.static_space = Space()
        self.step = math.nan
        self.time_unit = "min"
        self.obs_mean = torch.zeros(0, dtype=torch.float64)
        self.obs_sd = torch.ones(0, dtype=torch.float64)
        self.residual_sd = torch.zeros(0, 0, dtype=torch.float64)  # [H, D]
        self.rho = torch.zeros(0, dtype=torch.float64)  # [D]
        self.train_ranges: dict[str, list[float]] = {}
        self.data_summary: dict[str, Any] = {}
        self._fitted = False

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        """Fit the point forecast on `train` windows, the noise on `val` windows."""
        unknown = sorted(set(options) - set(self.fit_options))
        if unknown:
            allowed = list(self.fit_options) or "none"
            raise InvalidInputError(
                f"{type(self).__name__}.fit: unknown options {unknown}; allowed: {allowed}"
            )
        channels = self.obs_channels if self.obs_channels is not None else train.obs_space.names
        if not channels:
            raise InvalidInputError("the model needs at least one observation channel")
        train_sel = self._select(train, channels, "train")
        val_sel = self._select(val, channels, "val")
        for what, space_name in (("actions", "action_space"), ("static", "static_space")):
            if getattr(val, space_name).names != getattr(train, space_name).names:
                raise InvalidInputError(
                    f"val {what} channels {getattr(val, space_name).names} differ from train "
                    f"{getattr(train, space_name).names}"
                )
        train_sel.validate()
        val_sel.validate()
        self.obs_space = train_sel.obs_space
        self.action_space = train.action_space
        self.static_space = train.static_space
        self.time_unit = train.time_unit
        self.step = _median_step(train_sel)
        train_w = make_windows(self._padded(train_sel), self.history_steps, self.horizon_steps,
                               self.stride)
        val_w = make_windows(self._padded(val_sel), self.history_steps, self.horizon_steps,
                             self.stride)
        for what, windows in (("train", train_w), ("val", val_w)):
            if len(windows) == 0:
                raise InvalidInputError(
                    f"{what} has no complete window of {self.history_steps} + "
                    f"{self.horizon_steps} steps"
                )
        self.obs_mean, self.obs_sd = _masked_mean_sd(train_sel.obs, train_sel.mask)
        self._fit_normalisation(train_sel)
        self.train_ranges = _observed_ranges(train_sel)
        self.data_summary = {
            "n_train_windows": len(train_w),
            "n_val_windows": len(val_w),
            "train_subjects": len(train_sel),
            "val_subjects": len(val_sel),
            "train_subject_ids": _abbreviate(train_sel.subject_ids),
            "training_data_sha256": {
                "train": trajectories_sha256(train_sel),
                "val": trajectories_sha256(val_sel),
            },
        }
        history, stopped_because = self._fit_point(train_w, val_w, **options)
        pred = self._point_from_windows(val_w)
        self._calibrate(pred, val_w)
        self._fitted = True
        val_loss = self._standardised_mse(pred, val_w)
        if not history:
            history.append({"val_loss": val_loss})
        return FitReport(
            epochs=self._epochs, best_val_loss=val_loss, stopped_because=stopped_because,
            history=history,
        )

    _epochs: ClassVar[int] = 0

    def _fit_normalisation(self, train: Trajectories) -> None:
        """Hook for subclasses that normalise more than the observations."""

    def _fit_point(
        self, train: Windows, val: Windows, **options: Any
    ) -> tuple[list[dict[str, float]], str]:
        raise NotImplementedError

    def _select(self, data: Trajectories, channels: Sequence[str], what: str) -> Trajectories:
        missing = [c for c in channels if c not in data.obs_space.names]
        if missing:
            raise InvalidInputError(
                f"{what} lacks observation channels {missing}; it has {data.obs_space.names}"
            )
        return select_obs(data, list(channels))

    def _calibrate(self, pred: torch.Tensor, windows: Windows) -> None:
        """Per-(horizon, channel) RMSE and lag-one error correlation on validation windows."""
        truth = windows.future_obs.double()
        mask = windows.future_mask
        error = torch.where(mask, truth - pred, torch.zeros_like(pred))
        count = mask.sum(dim=0)  # [H, D]
        for d in range(len(self.obs_space)):
            if int(count[:, d].sum()) == 0:
                raise InvalidInputError(
                    f"val has no observed {self.obs_space.names[d]!r} in any forecast window; "
                    "cannot measure the forecast error"
                )
        rmse = torch.sqrt((error**2).sum(dim=0) / count.clamp(min=1))
        rmse = _fill_missing_horizons(rmse, count > 0)
        self.residual_sd = torch.maximum(rmse, _MIN_SD * self.obs_sd)
        self.rho = lag_one_correlation(error / self.residual_sd, mask)

    def _standardised_mse(self, pred: torch.Tensor, windows: Windows) -> float:
        """Mean squared error over observed targets, in units of each channel's train sd."""
        mask = windows.future_mask
        z = (windows.future_obs.double() - pred) / self.obs_sd
        return float(torch.where(mask, z**2, torch.zeros_like(z)).sum() / mask.sum().clamp(min=1))

    # --- encoding and imagining --------------------------------------------------------------

    def encode(self, history: Trajectories) -> Belief:
        """Belief at the last valid time of each subject's history (its last `history_steps`)."""
        self._require_fitted()
        obs, mask, actions, static = self._history_tensors(history)
        return Belief(self._belief(obs, mask, actions, static))

    def imagine(
        self, belief: Belief, actions: torch.Tensor, n_samples: int = 100, seed: int = 0
    ) -> Forecast:
        """`n_samples` futures under `actions [B, H, A]`, H <= `horizon_steps`."""
        self._require_fitted()
        if not isinstance(n_samples, int) or n_samples < 1:
            raise InvalidInputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        actions = self._check_actions(belief, actions)
        b, h, _ = actions.shape
        d = len(self.obs_space)
        mean = self._point(belief.tensors, actions.double())
        sd = self.residual_sd[:h].to(mean.device)
        generator = torch.Generator().manual_seed(int(seed))
        noise = correlated_normal(
            n_samples, (b, h, d), self.rho, generator=generator, dtype=torch.float64
        ).to(mean.device)
        samples = mean + sd * noise
        times = self.step * torch.arange(1, h + 1, dtype=torch.float64, device=mean.device)
        return Forecast(
            samples=samples.float(),
            times=times.expand(b, h).clone(),
            space=self.obs_space,
            extras={"mean": mean.float(), "sd": sd.expand(b, h, d).float()},
        )

    def _belief(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor, static: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"last": self._last_observed(obs, mask)}

    def _belief_keys(self) -> list[str]:
        return ["last"]

    def _point(self, belief: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Point forecast `[B, H, D]` (float64) from belief tensors and `actions [B, H, A]`."""
        raise NotImplementedError

    def _point_from_windows(self, windows: Windows) -> torch.Tensor:
        obs, mask, actions, static = self._history_tensors(windows.history, check=False)
        belief = self._belief(obs, mask, actions, static)
        return self._point(belief, windows.future_actions.double())

    def _last_observed(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last observed value per subject and channel `[B, D]`; the train mean if none."""
        t = obs.shape[1]
        position = torch.arange(t, device=obs.device)[None, :, None].expand_as(mask)
        last = torch.where(mask, position, -1).max(dim=1).values  # [B, D]
        value = obs.gather(1, last.clamp(min=0)[:, None, :]).squeeze(1)
        fallback = self.obs_mean.to(obs.device).expand_as(value)
        return torch.where(last >= 0, value, fallback)

    def _history_tensors(
        self, history: Trajectories, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last `history_steps` valid points: obs, mask, actions (the action at the
        origin zeroed: it is the first future action), static; all float64 but the mask."""
        if not isinstance(history, Trajectories):
            raise InvalidInputError(f"history must be Trajectories, got {type(history).__name__}")
        missing = [c for c in self.obs_space.names if c not in history.obs_space.names]
        if missing:
            raise InvalidInputError(
                f"history lacks observation channels {missing} that the model was trained on "
                f"(it has {history.obs_space.names})"
            )
        for what, mine, theirs in (
            ("action", self.action_space, history.action_space),
            ("static", self.static_space, history.static_space),
        ):
            if mine.names != theirs.names:
                raise InvalidInputError(
                    f"history {what} channels {theirs.names} differ from the model's {mine.names}"
                )
        n = self.history_steps
        history = self._padded(history)
        lengths = history.lengths
        short = torch.nonzero(lengths < n).flatten()
        if len(short):
            i = int(short[0])
            raise InvalidInputError(
                f"history of subject {history.subject_ids[i]!r} has {int(lengths[i])} valid time "
                f"points; the model needs the last {n} (history_steps)"
            )
        index = (lengths[:, None] - n + torch.arange(n)[None, :]).long()  # [B, n]
        rows = torch.arange(len(history))[:, None]
        channels = [history.obs_space.index(c) for c in self.obs_space.names]
        obs = history.obs[rows, index][..., channels].double()
        mask = history.mask[rows, index][..., channels]
        actions = history.actions[rows, index].double().clone()
        actions[:, -1] = 0.0
        static = history.static.double()
        if check:
            times = history.times[rows, index].double()
            steps = times[:, 1:] - times[:, :-1]
            bad = (steps - self.step).abs() > _STEP_TOLERANCE * self.step
            if bad.any():
                i = int(torch.nonzero(bad)[0, 0])
                raise InvalidInputError(
                    f"history of subject {history.subject_ids[i]!r} is sampled every "
                    f"{float(steps[i][bad[i]][0]):g} {history.time_unit}; the model was trained "
                    f"on a regular {self.step:g} {self.time_unit} grid"
                )
            self.obs_space.validate(obs, "history obs", mask=mask)
            self.action_space.validate(actions, "history actions")
            self.static_space.validate(static, "history static")
        return obs, mask, actions, static

    def _check_actions(self, belief: Belief, actions: torch.Tensor) -> torch.Tensor:
        needed = self._belief_keys()
        if (
            not isinstance(belief, Belief)
            or any(k not in belief.tensors for k in needed)
            or belief.tensors["last"].shape[1:] != (len(self.obs_space),)
        ):
            raise InvalidInputError(
                f"belief was not made by this {type(self).__name__}'s encode "
                f"(expected tensors {needed}, 'last' of shape [B, {len(self.obs_space)}])"
            )
        if not isinstance(actions, torch.Tensor):
            actions = torch.as_tensor(actions)
        b = len(belief)
        if actions.dim() != 3 or actions.shape[0] != b or actions.shape[2] != len(
            self.action_space
        ):
            raise InvalidInputError(
                f"actions must be [B={b}, H, A={len(self.action_space)}] "
                f"({self.action_space.names}), got {tuple(actions.shape)}"
            )
        h = actions.shape[1]
        if not 1 <= h <= self.horizon_steps:
            raise InvalidInputError(
                f"forecast horizon of {h} steps is not supported: the model was trained for "
                f"1 to {self.horizon_steps} steps (horizon_steps)"
            )
        self.action_space.validate(actions, "actions")
        return actions

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise InvalidInputError(f"{type(self).__name__} is not fitted: call fit or load")

    # --- saving and loading ------------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "history_steps": self.history_steps,
            "horizon_steps": self.horizon_steps,
            "obs_channels": self.obs_space.names,
            "seed": self.seed,
            "stride": self.stride,
            "pad_history": self.pad_history,
        }

    def _padded(self, data: Trajectories) -> Trajectories:
        return pad_left(data, self.history_steps - 1, self.step) if self.pad_history else data

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _restore(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Subclass state from a loaded directory (after the shared fields are set)."""

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {
            "obs_mean": self.obs_mean,
            "obs_sd": self.obs_sd,
            "residual_sd": self.residual_sd,
            "rho": self.rho,
            **self._extra_tensors(),
        }

    def _context_of_use(self) -> str:
        return (
            f"Baseline for comparison: {self.title}. Use it as the bar a learned world model "
            "must beat on the same windows, not to make decisions."
        )

    def _limitations(self) -> list[str]:
        return [
            f"Assumes a regular time grid of {self.step:g} {self.time_unit} and forecasts at "
            f"most {self.horizon_steps} steps ({self.horizon_steps * self.step:g} "
            f"{self.time_unit}).",
            "Forecast errors are modelled as Gaussian with a per-horizon spread that does not "
            "depend on the state or the actions; samples are not clipped to channel ranges.",
            "The spread and its lag-one correlation are measured on the validation windows "
            "the model was fitted with; they hold only for data like those.",
        ]

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write a versioned model directory (config, safetensors weights, manifest, card)."""
        self._require_fitted()
        config: dict[str, Any] = {
            "model_class": self.model_name,
            "hyperparameters": self._hyperparameters(),
            "obs_space": self.obs_space.to_dict(),
            "action_space": self.action_space.to_dict(),
            "static_space": self.static_space.to_dict(),
            "step": self.step,
            "time_unit": self.time_unit,
            "train_ranges": self.train_ranges,
            "data_summary": self.data_summary,
            **self._extra_config(),
        }
        manifest = Manifest.create(
            "model",
            {
                "model_class": self.model_name,
                "hyperparameters": config["hyperparameters"],
                **{k: v for k, v in self.data_summary.items() if k != "train_subject_ids"},
            },
            self.seed,
        )
        card = model_card(
            f"{self.title} ({self.model_name})",
            {"format_version": MODEL_FORMAT_VERSION, **config},
            manifest,
            context_of_use=self._context_of_use(),
            validation_domain=self._validation_domain(),
            limitations=self._limitations(),
            metrics=self._metrics(),
        )
        save_model_dir(directory, config, self._tensors(), manifest, card)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DirectForecaster:
        """Read a directory written by `save`; refuses corrupted, edited or foreign ones."""
        config, tensors, manifest = load_model_dir(directory)
        if config.get("model_class") != cls.model_name:
            raise InvalidInputError(
                f"{directory}: holds a {config.get('model_class')!r} model, "
                f"not {cls.model_name!r}"
            )
        try:
            model = cls(**config["hyperparameters"])
            model.obs_space = Space.from_dict(config["obs_space"])
            model.action_space = Space.from_dict(config["action_space"])
            model.static_space = Space.from_dict(config["static_space"])
            model.step = float(config["step"])
            model.time_unit = str(config["time_unit"])
            model.train_ranges = dict(config.get("train_ranges", {}))
            model.data_summary = dict(config.get("data_summary", {}))
            for name in ("obs_mean", "obs_sd", "residual_sd", "rho"):
                setattr(model, name, tensors[name].double())
            model._restore(config, tensors)
        except InvalidInputError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInputError(
                f"{directory}: incomplete or inconsistent model directory ({error!r})"
            ) from None
        d, h = len(model.obs_space), model.horizon_steps
        expected = {"obs_mean": (d,), "obs_sd": (d,), "residual_sd": (h, d), "rho": (d,)}
        for name, shape in expected.items():
            if tuple(getattr(model, name).shape) != shape:
                raise InvalidInputError(
                    f"{directory}: tensor {name!r} has shape "
                    f"{tuple(getattr(model, name).shape)}, expected {shape}"
                )
        model._fitted = True
        return model

    def _validation_domain(self) -> str:
        lines = [
            f"Trained on {self.data_summary.get('train_subjects', '?')} subjects "
            f"({self.data_summary.get('n_train_windows', '?')} windows; ids "
            f"{', '.join(self.data_summary.get('train_subject_ids', []))}), "
            f"calibrated on {self.data_summary.get('val_subjects', '?')} validation subjects "
            f"({self.data_summary.get('n_val_windows', '?')} windows), sampled every "
            f"{self.step:g} {self.time_unit}.",
            "",
            "| channel | kind | unit | declared range | range seen in training |",
            "|---|---|---|---|---|",
        ]
        for kind, space in (("obs", self.obs_space), ("action", self.action_space),
                            ("static", self.static_space)):
            for channel in space:
                seen = self.train_ranges.get(channel.name)
                seen_text = f"[{seen[0]:.4g}, {seen[1]:.4g}]" if seen else "none observed"
                lines.append(
                    f"| {channel.name} | {kind} | {channel.unit} | "
                    f"[{channel.low:g}, {channel.high:g}] | {seen_text} |"
                )
        return "\n".join(lines)

    def _metrics(self) -> dict[str, str]:
        metrics = {}
        steps = sorted({1, max(1, self.horizon_steps // 2), self.horizon_steps})
        for d, channel in enumerate(self.obs_space):
            for k in steps:
                metrics[f"val RMSE {channel.name} at {k * self.step:g} {self.time_unit}"] = (
                    f"{float(self.residual_sd[k - 1, d]):.4g} {channel.unit}"
                )
            metrics[f"val lag-one error correlation {channel.name}"] = f"{float(self.rho[d]):.3f}"
        return metrics


def _median_step(data: Trajectories) -> float:
    steps = data.times[:, 1:] - data.times[:, :-1]
    steps = steps[torch.isfinite(steps)]
    if len(steps) == 0:
        raise InvalidInputError("train has no two consecutive time points to measure the step")
    step = float(steps.double().median())
    if not step > 0:
        raise InvalidInputError(f"train time step must be positive, got {step}")
    return step


def _masked_mean_sd(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and sd over the observed entries of `[..., C]` (sd 1 if degenerate)."""
    flat = values.reshape(-1, values.shape[-1]).double()
    observed = mask.reshape(-1, values.shape[-1])
    n = observed.sum(dim=0).clamp(min=1)
    filled = torch.where(observed, flat, torch.zeros_like(flat))
    mean = filled.sum(dim=0) / n
    var = (torch.where(observed, flat - mean, torch.zeros_like(flat)) ** 2).sum(dim=0) / n
    sd = var.sqrt()
    return mean, torch.where(sd > _MIN_SD, sd, torch.ones_like(sd))


def _observed_ranges(data: Trajectories) -> dict[str, list[float]]:
    """[min, max] of every channel over the observed / valid entries of the training data."""
    valid = torch.isfinite(data.times)
    ranges: dict[str, list[float]] = {}
    parts = (
        (data.obs_space, data.obs, data.mask & valid[..., None]),
        (data.action_space, data.actions, valid[..., None].expand_as(data.actions)),
        (data.static_space, data.static, torch.ones_like(data.static, dtype=torch.bool)),
    )
    for space, values, mask in parts:
        for j, name in enumerate(space.names):
            seen = values[..., j][mask[..., j]]
            if len(seen):
                ranges[name] = [float(seen.min()), float(seen.max())]
    return ranges


def _abbreviate(ids: Sequence[str], keep: int = 8) -> list[str]:
    ids = list(ids)
    return ids if len(ids) <= keep else [*ids[:keep], f"… and {len(ids) - keep} more"]


def _fill_missing_horizons(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Along H, replace entries without data by the nearest earlier (else later) one."""
    out = values.clone()
    h, d = values.shape
    for j in range(d):
        known = torch.nonzero(present[:, j]).flatten()
        for k in range(h):
            if not present[k, j]:
                earlier = known[known < k]
                out[k, j] = values[earlier[-1] if len(earlier) else known[0], j]
    return out

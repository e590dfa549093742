"""LinearARX: ridge autoregression with exogenous inputs, direct multi-horizon.

One closed-form ridge regression (normal equations solved in float64) predicts every future
value at once, as a change from the last observation, in units of the channel's training
sd. Features, all standardised with training statistics:

- the last `history_steps` observations (a missing value is filled with the channel mean,
  i.e. 0 after standardising) and their observed/missing mask;
- the history actions (the action at the origin is the first future action, not history);
- the future actions, one per step: known inputs, the thing a planner varies;
- the static covariates; and an unpenalised intercept.

The regression is causal in the future actions: the forecast `h` steps ahead uses only
the actions taken before it (the first `h`). Without that, on data logged under a
feedback policy (insulin given *because* glucose rose) a direct model learns that later
actions predict earlier outcomes, which is exactly wrong for planning; with it, a forecast
over fewer steps than trained is the same as the first steps of a longer one. Each
(horizon, channel) output is fitted on the windows where its target is observed.

The ridge strength is `ridge` if given, else the value of a small grid with the lowest
validation error (recorded in the config and the `FitReport`). The uncertainty is that of
`Persistence`: per-horizon validation RMSE and lag-one error correlation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.models.direct import DirectForecaster, _masked_mean_sd
from biowm.models.registry import register_model
from biowm.models.windows import Windows

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
_GRAM_CACHE_SIZE = 64


@register_model("linear")
class LinearARX(DirectForecaster):
    """Direct multi-horizon ridge ARX model; see the module docstring."""

    title = "linear ARX (direct multi-horizon ridge regression)"
    fit_options: ClassVar[tuple[str, ...]] = ("ridge_grid",)
    _epochs: ClassVar[int] = 1

    def __init__(
        self,
        history_steps: int = 24,
        horizon_steps: int = 24,
        obs_channels: Sequence[str] | None = None,
        seed: int = 0,
        stride: int = 3,
        ridge: float | None = None,
        pad_history: bool = False,
    ) -> None:
        super().__init__(history_steps, horizon_steps, obs_channels, seed, stride, pad_history)
        if ridge is not None:
            _check_ridge(ridge)
        self.ridge = ridge
        self.chosen_ridge = math.nan
        self.ridge_selection: list[dict[str, float]] = []
        self.action_mean = torch.zeros(0, dtype=torch.float64)
        self.action_sd = torch.ones(0, dtype=torch.float64)
        self.static_mean = torch.zeros(0, dtype=torch.float64)
        self.static_sd = torch.ones(0, dtype=torch.float64)
        self.weights = torch.zeros(0, 0, 0, dtype=torch.float64)  # [H, D, F]

    # --- features ---------------------------------------------------------------------------

    def _fit_normalisation(self, train: Trajectories) -> None:
        valid = torch.isfinite(train.times)[..., None].expand_as(train.actions)
        self.action_mean, self.action_sd = _masked_mean_sd(train.actions, valid)
        all_static = torch.ones_like(train.static, dtype=torch.bool)
        self.static_mean, self.static_sd = _masked_mean_sd(train.static, all_static)

    def _n_history_features(self) -> int:
        d, a, s = len(self.obs_space), len(self.action_space), len(self.static_space)
        return self.history_steps * (2 * d + a) + s

    def _n_features(self) -> int:
        return self._n_history_features() + self.horizon_steps * len(self.action_space) + 1

    def _belief_keys(self) -> list[str]:
        return ["last", "features"]

    def _belief(
        self, obs: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor, static: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        mean, sd = self.obs_mean.to(obs.device), self.obs_sd.to(obs.device)
        z_obs = torch.where(mask, (obs - mean) / sd, torch.zeros_like(obs))
        z_actions = (actions - self.action_mean.to(obs.device)) / self.action_sd.to(obs.device)
        z_static = (static - self.static_mean.to(obs.device)) / self.static_sd.to(obs.device)
        features = torch.cat(
            [z_obs.flatten(1), mask.double().flatten(1), z_actions.flatten(1), z_static], dim=1
        )
        return {"last": self._last_observed(obs, mask), "features": features}

    def _design(self, belief: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Feature matrix `[B, F]`; future actions beyond `actions`' H are zero (unused)."""
        b, h, a = actions.shape
        device = actions.device
        future = torch.zeros(b, self.horizon_steps, a, dtype=torch.float64, device=device)
        future[:, :h] = (actions - self.action_mean.to(device)) / self.action_sd.to(device)
        history = belief["features"].double()
        if history.shape[1:] != (self._n_history_features(),):
            raise InvalidInputError(
                f"belief features have shape {tuple(history.shape)}, expected "
                f"[B, {self._n_history_features()}]: was it encoded by another model?"
            )
        ones = torch.ones(b, 1, dtype=torch.float64, device=device)
        return torch.cat([history, future.flatten(1), ones], dim=1)

    def _allowed(self) -> torch.Tensor:
        """`[H, F]`: may output h use feature f? (Future action j only for j <= h.)"""
        h_max, a = self.horizon_steps, len(self.action_space)
        allowed = torch.ones(h_max, self._n_features(), dtype=torch.bool)
        start = self._n_history_features()
        step_of = torch.arange(h_max).repeat_interleave(a)  # future feature -> its step j
        allowed[:, start : start + h_max * a] = step_of[None, :] <= torch.arange(h_max)[:, None]
        return allowed

    def _point(self, belief: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        return self._point_with(self.weights, belief, actions)

    def _point_with(
        self, weights: torch.Tensor, belief: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> torch.Tensor:
        h = actions.shape[1]
        x = self._design(belief, actions)
        change = torch.einsum("bf,hdf->bhd", x, weights[:h].to(x.device))
        last = belief["last"].double()
        return last[:, None, :] + change * self.obs_sd.to(x.device)

    # --- fitting ----------------------------------------------------------------------------

    def _fit_point(
        self, train: Windows, val: Windows, ridge_grid: Sequence[float] | None = None,
    ) -> tuple[list[dict[str, float]], str]:
        if self.ridge is not None:
            grid = [float(self.ridge)]
        else:
            grid = [float(r) for r in (ridge_grid if ridge_grid is not None else RIDGE_GRID)]
            if not grid:
                raise InvalidInputError("ridge_grid must not be empty")
        for value in grid:
            _check_ridge(value)
        candidates = self._solve(train, grid)  # [L, H, D, F]
        obs, mask, actions, static = self._history_tensors(val.history, check=False)
        belief = self._belief(obs, mask, actions, static)
        future = val.future_actions.double()
        losses = [
            self._standardised_mse(self._point_with(w, belief, future), val) for w in candidates
        ]
        best = min(range(len(grid)), key=lambda i: losses[i])
        self.weights = candidates[best]
        self.chosen_ridge = grid[best]
        self.ridge_selection = [
            {"ridge": r, "val_loss": v} for r, v in zip(grid, losses, strict=True)
        ]
        if self.ridge is not None:
            why = f"closed-form ridge solve with the given ridge={self.chosen_ridge:g}"
        else:
            why = (
                f"closed-form ridge solve; ridge={self.chosen_ridge:g} chosen by validation "
                f"MSE from the grid {grid}"
            )
        return [dict(item) for item in self.ridge_selection], why

    def _solve(self, train: Windows, grid: Sequence[float]) -> torch.Tensor:
        """Ridge weights `[L, H, D, F]` for every ridge value in `grid`."""
        obs, mask, actions, static = self._history_tensors(train.history, check=False)
        belief = self._belief(obs, mask, actions, static)
        x = self._design(belief, train.future_actions.double())  # [N, F]
        last = belief["last"]
        target = (train.future_obs.double() - last[:, None, :]) / self.obs_sd  # [N, H, D]
        observed = train.future_mask
        n_features = x.shape[1]
        penalty = torch.ones(n_features, dtype=torch.float64)
        penalty[-1] = 0.0  # the intercept is not shrunk
        allowed = self._allowed()
        weights = torch.zeros(
            len(grid), self.horizon_steps, len(self.obs_space), n_features, dtype=torch.float64
        )
        grams: dict[bytes, tuple[torch.Tensor, int]] = {}
        for h in range(self.horizon_steps):
            # Outputs of this step that share a target mask share one Gram matrix.
            patterns, which = torch.unique(observed[:, h, :], dim=1, return_inverse=True)
            cols = allowed[h]
            for p in range(patterns.shape[1]):
                rows = patterns[:, p]
                every = bool(rows.all())
                xr = x if every else x[rows]
                key = rows.numpy().tobytes()
                if key not in grams:
                    if len(grams) >= _GRAM_CACHE_SIZE:
                        grams.clear()
                    grams[key] = (xr.T @ xr, int(rows.sum()))
                gram, n = grams[key]
                if n == 0:
                    continue  # never observed: the forecast stays the last observation
                channels = torch.nonzero(which == p).flatten()
                y = target[:, h] if every else target[rows, h]
                g = gram[cols][:, cols] / n
                rhs = (xr.T @ y[:, channels])[cols] / n  # [F_h, C]
                for i, value in enumerate(grid):
                    lhs = g + torch.diag(value * penalty[cols])
                    solution = torch.linalg.solve(lhs, rhs)  # [F_h, C]
                    block = weights[i, h, channels]
                    block[:, cols] = solution.T
                    weights[i, h, channels] = block
        return weights

    # --- saving and loading -----------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "ridge": self.ridge}

    def _extra_config(self) -> dict[str, Any]:
        return {
            "chosen_ridge": self.chosen_ridge,
            "ridge_selection": self.ridge_selection,
            "ridge_chosen_by": "given" if self.ridge is not None else "validation grid",
            "feature_layout": [
                "history obs (standardised, missing = 0) [history_steps, D]",
                "history obs mask [history_steps, D]",
                "history actions (standardised; origin action zeroed) [history_steps, A]",
                "static (standardised) [S]",
                "future actions (standardised; causal per output) [horizon_steps, A]",
                "intercept [1]",
            ],
            "target": "(obs[t+h] - last observed) / train obs sd",
        }

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self.weights,
            "action_mean": self.action_mean,
            "action_sd": self.action_sd,
            "static_mean": self.static_mean,
            "static_sd": self.static_sd,
        }

    def _restore(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.chosen_ridge = float(config["chosen_ridge"])
        self.ridge_selection = list(config.get("ridge_selection", []))
        for name in ("weights", "action_mean", "action_sd", "static_mean", "static_sd"):
            setattr(self, name, tensors[name].double())
        a, s = len(self.action_space), len(self.static_space)
        expected = {
            "weights": (self.horizon_steps, len(self.obs_space), self._n_features()),
            "action_mean": (a,), "action_sd": (a,), "static_mean": (s,), "static_sd": (s,),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise InvalidInputError(
                    f"tensor {name!r} has shape {tuple(getattr(self, name).shape)}, "
                    f"expected {shape}"
                )

    def _limitations(self) -> list[str]:
        return [
            "Linear in the history, the actions and the static covariates: it misses "
            "saturation, thresholds and interactions (e.g. a dose whose effect depends on "
            "the state).",
            "Fitted on logged (observational) data: where a behaviour policy reacts to the "
            "state, action effects are confounded; treat its action responses with care.",
            *super()._limitations(),
        ]


def _check_ridge(value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidInputError(f"ridge must be a positive finite number, got {value!r}")

"""Batched model-predictive control over a world model's imagined futures (CEM and MPPI).

For every subject at once, candidate action sequences (piecewise constant over blocks of
`block_sizes`; a short first block lets a dose be given now) are imagined with the world
model, scored by a domain objective on the forecast samples plus penalties (chance-
constraint violations estimated from the samples, ensemble disagreement), and refined by
the cross-entropy method or MPPI. All subjects × candidates go through the model as one
batch. The safety shield then checks the chosen plan: outside the validation domain, or
when no candidate satisfies the chance constraints, it substitutes the fallback (a
domain's safe default) and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Space
from biowm.core.world_model import Belief, Forecast, WorldModel
from biowm.plan.safety import SafetySpec

Objective = Callable[[Forecast], torch.Tensor]


@dataclass
class MPCConfig:
    method: str = "cem"
    horizon_steps: int = 24
    block_sizes: tuple[int, ...] = (1, 5, 6, 6, 6)
    candidates: int = 64
    iterations: int = 3
    elite_fraction: float = 0.125
    forecast_samples: int = 16
    temperature: float = 0.1
    initial_std_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("cem", "mppi"):
            raise InvalidInputError(f"MPC method must be cem or mppi, got {self.method!r}")
        if sum(self.block_sizes) != self.horizon_steps or min(self.block_sizes) < 1:
            raise InvalidInputError(
                f"block_sizes {self.block_sizes} must be positive and sum to horizon_steps "
                f"({self.horizon_steps})"
            )


@dataclass
class Plan:
    """The chosen action sequences `[B, H, A]` and what the model expects of them."""

    actions: torch.Tensor
    cost: torch.Tensor
    violation_probability: dict[str, torch.Tensor]
    forecast_mean: torch.Tensor
    shielded: torch.Tensor
    reasons: list[list[str]] = field(default_factory=list)
    constraint_unmet: torch.Tensor | None = None


@dataclass
class MPCPlanner:
    """Plans the `controlled` channels of `action_space`; others come from `fixed_actions`."""

    action_space: Space
    controlled: list[str]
    objective: Objective
    safety: SafetySpec
    config: MPCConfig = field(default_factory=MPCConfig)

    def __post_init__(self) -> None:
        self._index = [self.action_space.index(c) for c in self.controlled]
        low = torch.tensor([self.action_space[c].low for c in self.controlled])
        high = torch.tensor([self.action_space[c].high for c in self.controlled])
        for i, name in enumerate(self.controlled):
            low[i] = max(float(low[i]), self.safety.action_low.get(name, float(low[i])))
            high[i] = min(float(high[i]), self.safety.action_high.get(name, float(high[i])))
        self.low, self.high = low, high

    # ----- candidate handling ----------------------------------------------------------------
    def _expand(self, blocks: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Blocks `[B, N, nb, C]` -> full actions `[B·N, H, A]` with fixed channels filled in."""
        b, n, nb, c = blocks.shape
        sizes = torch.tensor(self.config.block_sizes)
        steps = blocks.repeat_interleave(sizes, dim=2)
        full = fixed[:, None].expand(b, n, -1, -1).clone()
        full[..., self._index] = steps
        return full.reshape(b * n, self.config.horizon_steps, -1)

    def _limit_on_board(self, actions: torch.Tensor, recent: torch.Tensor | None,
                        step: float) -> torch.Tensor:
        """Clip planned doses so the decaying amount on board never exceeds the limit."""
        rule = self.safety.on_board
        if rule is None:
            return actions
        channel = self.action_space.index(rule.channel)
        history = recent[..., channel] if recent is not None else actions.new_zeros(
            actions.shape[0], 0)
        planned = actions[..., channel].clone()
        limit = torch.as_tensor(rule.limit, dtype=planned.dtype)
        if limit.dim() == 1 and limit.shape[0] != planned.shape[0]:
            limit = limit.repeat_interleave(planned.shape[0] // limit.shape[0])
        for k in range(planned.shape[1]):
            past = torch.cat([history, planned[:, :k]], dim=1)
            weights = rule.weights(past.shape[1] + 1, step)
            on_board = (past * weights[:-1]).sum(dim=1) * step
            room = ((limit - on_board) / step).clamp(min=0.0)
            planned[:, k] = torch.minimum(planned[:, k], room)
        actions = actions.clone()
        actions[..., channel] = planned
        return actions

    def _score(self, model: WorldModel, belief: Belief, actions: torch.Tensor, seed: int
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Forecast]:
        forecast = model.imagine(belief, actions, n_samples=self.config.forecast_samples,
                                 seed=seed)
        cost = self.objective(forecast)
        violations = {}
        for constraint in self.safety.chance_constraints:
            p = constraint.violation_probability(forecast)
            violations[constraint.channel] = p
            excess = (p - constraint.max_probability).clamp(min=0.0)
            cost = cost + self.safety.constraint_penalty * excess
        if self.safety.disagreement_weight and "member_means" in forecast.extras:
            spread = forecast.extras["member_means"].std(dim=0).mean(dim=(1, 2))
            cost = cost + self.safety.disagreement_weight * spread
        return cost, violations, forecast

    # ----- the planner -----------------------------------------------------------------------
    @torch.no_grad()
    def plan(
        self,
        model: WorldModel,
        belief: Belief,
        fixed_actions: torch.Tensor,
        nominal: torch.Tensor,
        fallback_actions: torch.Tensor,
        recent_actions: torch.Tensor | None = None,
        envelope: tuple[torch.Tensor, torch.Tensor] | None = None,
        current_obs: torch.Tensor | None = None,
        obs_space: Space | None = None,
    ) -> Plan:
        """Plan for B subjects.

        `fixed_actions [B, H, A]` holds the channels not planned, `nominal` (`[B, C]` or
        `[B, blocks, C]`) centres the search, `fallback_actions [B, H, A]` is the safe default,
        `recent_actions [B, L, A]` feed the amount-on-board limit, `envelope` (low, high,
        each `[B, blocks, C]`) is a per-subject trust region that keeps candidates where the
        model was trained (a learned model is exploitable far from its data), and
        `current_obs [B, D]` (in `obs_space`) is checked against the validation domain.
        """
        cfg = self.config
        b = len(belief)
        nb = len(cfg.block_sizes)
        c = len(self.controlled)
        generator = torch.Generator().manual_seed(cfg.seed)
        if nominal.dim() == 2:
            nominal = nominal[:, None, :].expand(b, nb, c)
        nominal = nominal.float()
        mean = nominal.clone()
        low = self.low.expand(b, nb, c)
        high = self.high.expand(b, nb, c)
        if envelope is not None:
            low = torch.maximum(low, envelope[0].float())
            high = torch.minimum(high, envelope[1].float()).clamp(min=low)
        mean = torch.minimum(torch.maximum(mean, low), high)
        std = ((high - low) * cfg.initial_std_fraction).clamp(min=1e-6)
        n = cfg.candidates
        repeated = belief.repeat(n)
        best_cost = torch.full((b,), torch.inf)
        best_actions = torch.zeros(b, cfg.horizon_steps, fixed_actions.shape[-1])
        best_violation = {c.channel: torch.ones(b) for c in self.safety.chance_constraints}
        best_mean = torch.zeros(b, cfg.horizon_steps, len(model.obs_space))
        best_spread = torch.zeros(b)
        rows = torch.arange(b)
        # Common random numbers: every candidate is imagined with the same forecast seed,
        # and the chosen plan's risk is the one measured on these very samples.
        for _ in range(cfg.iterations):
            noise = torch.randn((b, n, nb, c), generator=generator)
            blocks = mean[:, None] + std[:, None] * noise
            blocks[:, 0] = mean  # keep the current mean as a candidate
            blocks[:, 1] = nominal
            blocks = torch.maximum(torch.minimum(blocks, high[:, None]), low[:, None])
            actions = self._expand(blocks, fixed_actions.float())
            recent = None if recent_actions is None else recent_actions.repeat_interleave(n, 0)
            actions = self._limit_on_board(actions, recent, model.step)
            cost, violations, forecast = self._score(model, repeated, actions, cfg.seed)
            cost = cost.reshape(b, n)
            argmin = cost.argmin(dim=1)
            pick = rows * n + argmin
            better = cost[rows, argmin] < best_cost
            best_cost = torch.where(better, cost[rows, argmin], best_cost)
            best_actions = torch.where(better[:, None, None], actions[pick], best_actions)
            best_mean = torch.where(better[:, None, None], forecast.mean()[pick], best_mean)
            for name, p in violations.items():
                best_violation[name] = torch.where(better, p[pick], best_violation[name])
            if "member_means" in forecast.extras:
                spread = forecast.extras["member_means"].std(dim=0).amax(dim=(1, 2))
                best_spread = torch.where(better, spread[pick], best_spread)
            if cfg.method == "cem":
                k = max(2, int(n * cfg.elite_fraction))
                elite = cost.topk(k, dim=1, largest=False).indices
                chosen = blocks[torch.arange(b)[:, None], elite]
                mean, std = chosen.mean(dim=1), chosen.std(dim=1).clamp(min=1e-6)
            else:
                scaled = (cost - cost.min(dim=1, keepdim=True).values) / cfg.temperature
                weights = torch.softmax(-scaled, dim=1)
                mean = (weights[..., None, None] * blocks).sum(dim=1)
                std = std * 0.7
        return self._shield(model, belief, best_actions, best_cost, best_violation, best_mean,
                            best_spread, fallback_actions.float(), current_obs, obs_space)

    def _shield(self, model: WorldModel, belief: Belief, actions: torch.Tensor,
                cost: torch.Tensor, violations: dict[str, torch.Tensor],
                forecast_mean: torch.Tensor, spread: torch.Tensor, fallback: torch.Tensor,
                current_obs: torch.Tensor | None, obs_space: Space | None) -> Plan:
        b = actions.shape[0]
        reasons: list[list[str]] = [[] for _ in range(b)]
        use_fallback = torch.zeros(b, dtype=torch.bool)
        if current_obs is not None and obs_space is not None:
            for j, channel in enumerate(obs_space):
                low = self.safety.observation_low.get(channel.name)
                high = self.safety.observation_high.get(channel.name)
                values = current_obs[:, j]
                for i in torch.nonzero(
                    ((values < low) if low is not None else torch.zeros(b, dtype=torch.bool))
                    | ((values > high) if high is not None else torch.zeros(b, dtype=torch.bool))
                ).flatten().tolist():
                    use_fallback[i] = True
                    reasons[i].append(
                        f"out of validation domain: {channel.name}={float(values[i]):.1f} "
                        f"{channel.unit} outside [{low}, {high}]; fallback policy used"
                    )
        if self.safety.max_disagreement is not None:
            for i in torch.nonzero(spread > self.safety.max_disagreement).flatten().tolist():
                use_fallback[i] = True
                reasons[i].append(
                    f"model members disagree by {float(spread[i]):.1f} > "
                    f"{self.safety.max_disagreement}; fallback policy used"
                )
        unmet = torch.zeros(b, dtype=torch.bool)
        for constraint in self.safety.chance_constraints:
            unmet |= violations[constraint.channel] > constraint.max_probability
        if bool(unmet.any()):
            # No candidate met the chance constraints: the search already minimised the
            # violation first (penalty); take the fallback instead only if it is safer.
            _, f_viol, _ = self._score(model, belief, fallback, self.config.seed)
            for constraint in self.safety.chance_constraints:
                name, limit = constraint.channel, constraint.max_probability
                side = "<" if constraint.below else ">"
                for i in torch.nonzero(violations[name] > limit).flatten().tolist():
                    safer = bool(f_viol[name][i] < violations[name][i])
                    use_fallback[i] |= safer
                    reasons[i].append(
                        f"no plan met P({name} {side} {constraint.threshold:g}) <= {limit:g} "
                        f"(least {float(violations[name][i]):.2f}, fallback "
                        f"{float(f_viol[name][i]):.2f}); "
                        + ("fallback used" if safer else "least-violating plan used")
                    )
        if bool(use_fallback.any()):
            actions = torch.where(use_fallback[:, None, None], fallback, actions)
            f_cost, f_viol, f_forecast = self._score(model, belief, actions, self.config.seed)
            cost = torch.where(use_fallback, f_cost, cost)
            violations = {k: torch.where(use_fallback, f_viol[k], v)
                          for k, v in violations.items()}
            forecast_mean = torch.where(use_fallback[:, None, None], f_forecast.mean(),
                                        forecast_mean)
        return Plan(actions=actions, cost=cost, violation_probability=violations,
                    forecast_mean=forecast_mean, shielded=use_fallback, reasons=reasons,
                    constraint_unmet=unmet)

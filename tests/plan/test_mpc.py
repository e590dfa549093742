"""MPC planner and safety shield on a toy world model whose dynamics are known."""

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.core.world_model import Belief, Forecast
from biowm.plan.mpc import MPCConfig, MPCPlanner
from biowm.plan.safety import AmountOnBoard, ChanceConstraint, SafetySpec

OBS = Space.of(Channel("glucose", "mg/dL", 0, 600))
ACTIONS = Space.of(Channel("dose", "U/min", 0, 2), Channel("food", "g", 0, 100))


class ToyModel:
    """glucose(t+1) = glucose(t) - 10·dose(t) + food(t)/2, with Gaussian noise of sd 5/step."""

    obs_space, action_space, static_space, step = OBS, ACTIONS, Space(), 5.0

    def imagine(self, belief: Belief, actions: torch.Tensor, n_samples: int = 16, seed: int = 0):
        g = belief.tensors["glucose"][:, None]
        path = g - 10.0 * actions[..., 0].cumsum(1) + 0.5 * actions[..., 1].cumsum(1)
        noise = torch.randn((n_samples, *path.shape), generator=torch.Generator().manual_seed(seed))
        samples = (path[None] + 5.0 * noise.cumsum(2) / 2)[..., None]
        times = self.step * torch.arange(1, path.shape[1] + 1).expand(path.shape[0], -1)
        return Forecast(samples=samples, times=times.float(), space=OBS)


def objective(forecast: Forecast) -> torch.Tensor:
    """Squared distance from 110 averaged over samples and horizon."""
    return ((forecast.channel("glucose") - 110.0) ** 2).mean(dim=(0, 2)) / 100.0


def planner(safety: SafetySpec, method: str = "cem") -> MPCPlanner:
    config = MPCConfig(method=method, horizon_steps=12, block_sizes=(1, 5, 6), candidates=64,
                       iterations=4, forecast_samples=64)
    return MPCPlanner(ACTIONS, ["dose"], objective, safety, config)


def inputs(glucose: list[float]):
    b = len(glucose)
    belief = Belief({"glucose": torch.tensor(glucose)})
    fixed = torch.zeros(b, 12, 2)
    nominal = torch.full((b, 1), 0.1)
    fallback = torch.zeros(b, 12, 2)
    return belief, fixed, nominal, fallback


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_planner_brings_high_glucose_down_and_leaves_low_alone(method):
    safety = SafetySpec(chance_constraints=[ChanceConstraint("glucose", 70.0)])
    plan = planner(safety, method).plan(ToyModel(), *inputs([250.0, 110.0]))
    first = plan.actions[:, 0, 0]
    assert float(first[0]) > 0.5  # a sizeable dose for the high subject
    assert float(plan.actions[1, :, 0].sum()) < float(plan.actions[0, :, 0].sum())
    assert plan.forecast_mean.shape == (2, 12, 1)
    assert not plan.shielded.any()


def test_chance_constraint_holds_on_the_planners_own_samples():
    spec = ChanceConstraint("glucose", 70.0, max_probability=0.05)
    # The objective alone would drive glucose to 110 quickly; close to 70 that is risky.
    plan = planner(SafetySpec(chance_constraints=[spec])).plan(ToyModel(), *inputs([160.0]))
    assert float(plan.violation_probability["glucose"][0]) <= 0.05
    again = ToyModel().imagine(Belief({"glucose": torch.tensor([160.0])}), plan.actions,
                               n_samples=64, seed=12345)
    assert float(spec.violation_probability(again)[0]) <= 0.15  # fresh samples agree


def test_infeasible_constraint_is_reported_and_least_violating_plan_kept():
    spec = ChanceConstraint("glucose", 70.0, max_probability=0.05)
    plan = planner(SafetySpec(chance_constraints=[spec])).plan(ToyModel(), *inputs([72.0]))
    assert bool(plan.constraint_unmet[0])
    assert float(plan.actions[0, :, 0].max()) < 0.05  # (almost) no dose at all
    assert "no plan met P(glucose < 70) <= 0.05" in plan.reasons[0][0]


def test_out_of_domain_observation_triggers_fallback_with_reason():
    safety = SafetySpec(observation_low={"glucose": 40.0}, observation_high={"glucose": 400.0})
    belief, fixed, nominal, fallback = inputs([450.0, 150.0])
    fallback[:, :, 0] = 0.3
    plan = planner(safety).plan(ToyModel(), belief, fixed, nominal, fallback,
                                current_obs=torch.tensor([[450.0], [150.0]]), obs_space=OBS)
    assert plan.shielded.tolist() == [True, False]
    assert torch.allclose(plan.actions[0, :, 0], torch.full((12,), 0.3))
    assert "out of validation domain: glucose=450.0" in plan.reasons[0][0]
    assert plan.reasons[1] == []


def test_bounds_and_amount_on_board_limit_are_respected():
    limit = torch.tensor([5.0, 100.0])
    safety = SafetySpec(action_high={"dose": 1.0},
                        on_board=AmountOnBoard("dose", duration=60.0, limit=limit))
    belief, fixed, nominal, fallback = inputs([400.0, 400.0])
    recent = torch.zeros(2, 12, 2)
    recent[0, -1, 0] = 0.8  # 4 U given 5 minutes ago to subject 0
    plan = planner(safety).plan(ToyModel(), belief, fixed, nominal, fallback,
                                recent_actions=recent)
    assert float(plan.actions[..., 0].max()) <= 1.0 + 1e-6
    rule = safety.on_board
    for i in range(2):
        doses = torch.cat([recent[i, :, 0], plan.actions[i, :, 0]])
        for k in range(12, 24):
            window = doses[: k + 1]
            on_board = float((window * rule.weights(k + 1, 5.0)).sum() * 5.0)
            assert on_board <= float(limit[i]) + 1e-3
    assert float(plan.actions[1, 0, 0]) > float(plan.actions[0, 0, 0])


def test_bad_configuration_is_refused():
    with pytest.raises(InvalidInputError, match="cem or mppi"):
        MPCConfig(method="random")
    with pytest.raises(InvalidInputError, match="block_sizes"):
        MPCConfig(horizon_steps=12, block_sizes=(5, 5))

"""The pathway model behind the `Simulator` protocol (reset / step / observe)."""

import numpy as np
import torch

from biowm.core.registry import get_domain
from biowm.core.simulator import Simulator
from biowm.domains.pathway import load_model, shipped_drugs, simulate_population


def test_stepping_matches_the_batched_runner_and_the_drug_acts():
    simulator = get_domain("pathway").make_simulator(
        "kholodenko2000", observe=["MAPK_PP"], controls=shipped_drugs("kholodenko2000"),
        sigma=0.0)
    assert isinstance(simulator, Simulator)
    assert simulator.action_space.names == ["MEKi"] and simulator.time_unit == "second"
    state = simulator.reset(2, seed=0)
    doses = torch.tensor([[0.0], [1000.0]])
    for _ in range(10):
        state = simulator.step(state, doses, 300.0)
    mapk_pp = simulator.observe(state)[:, 0].numpy()
    assert mapk_pp[1] < 5 < mapk_pp[0]  # 97 % inhibition at 1000 nM
    reference = simulate_population(load_model("kholodenko2000"), np.arange(0, 3001, 300.0),
                                    observe=["MAPK_PP"], workers=1).obs[0, -1, 0]
    assert abs(mapk_pp[0] - reference) < 1e-3 * reference  # sigma 0: the nominal cell
    static = simulator.static(state)
    assert static.shape == (2, 22) and not static.any()

"""The torch.compile path must give the eager results (it is only a speed option)."""

import torch

from biowm.domains.glucose.simulator import GlucoseSimulator


def test_compiled_simulator_matches_eager():
    eager, fused = GlucoseSimulator(), GlucoseSimulator(compiled=True)
    names = ["adult#001", "child#008", "adolescent#005"]
    a, b = eager.reset(subjects=names), fused.reset(subjects=names)
    action = torch.stack([eager.basal_u_per_min(a), torch.tensor([70.0, 20.0, 0.0],
                                                                 dtype=torch.float64)], dim=1)
    a, b = eager.step(a, action, 180.0), fused.step(b, action, 180.0)
    assert torch.allclose(a["x"], b["x"], rtol=1e-10, atol=1e-8)

"""Type 1 diabetes: the UVA/Padova virtual patients, CGM, pump, meals and controllers."""

from biowm.core.registry import Domain, register
from biowm.domains.glucose.cli import benchmark, control, simulate
from biowm.domains.glucose.env import make_env
from biowm.domains.glucose.simulator import GlucoseSimulator

DOMAIN = register(
    Domain(
        name="glucose",
        summary="Type 1 diabetes: 30 UVA/Padova virtual patients, CGM, pump, meals",
        make_simulator=GlucoseSimulator,
        commands={"simulate": simulate, "benchmark": benchmark, "control": control},
        make_env=make_env,
    )
)

__all__ = ["DOMAIN", "GlucoseSimulator", "make_env"]

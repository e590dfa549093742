"""ICU-Sepsis (Choudhary et al., 2024): a real-data MDP from MIMIC-III sepsis admissions,
for offline model-based RL: clinician logs, Bayesian/neural tabular world models,
pessimistic planning and off-policy evaluation, all scored exactly on the true tables."""

from biowm.core.registry import Domain, register
from biowm.domains.sepsis import cli
from biowm.domains.sepsis.simulator import SepsisEnv, SepsisSimulator

DOMAIN = register(
    Domain(
        name="sepsis",
        summary="ICU-Sepsis MDP (MIMIC-III): offline planning from clinician logs",
        make_simulator=SepsisSimulator,
        make_env=SepsisEnv,
        commands={"simulate": cli.simulate, "train": cli.train, "plan": cli.plan,
                  "evaluate": cli.evaluate, "benchmark": cli.benchmark},
    )
)

__all__ = ["DOMAIN", "SepsisEnv", "SepsisSimulator"]

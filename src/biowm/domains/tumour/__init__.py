"""Lung cancer under chemo- and radiotherapy: the Geng et al. (2017) PK-PD simulator with a
confounded clinician, the CRN / Causal Transformer counterfactual benchmark, and planning."""

from biowm.core.registry import Domain, register
from biowm.domains.tumour.cli import benchmark, plan, simulate, train
from biowm.domains.tumour.simulator import TumourSimulator

DOMAIN = register(
    Domain(
        name="tumour",
        summary="Lung cancer PK-PD (Geng 2017) under confounded chemo/radiotherapy",
        make_simulator=TumourSimulator,
        commands={"simulate": simulate, "train": train, "benchmark": benchmark, "plan": plan},
    )
)

__all__ = ["DOMAIN", "TumourSimulator"]

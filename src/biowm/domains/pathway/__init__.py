"""Signalling pathways: any SBML model (libroadrunner) as an intervention-ready, batched
simulator of virtual-cell populations under drug schedules, knockouts and boluses."""

from biowm.core.registry import Domain, register
from biowm.domains.pathway import cli, learn_cli, plan_cli
from biowm.domains.pathway.interventions import (
    Bolus,
    Control,
    DoseSchedule,
    Inhibitor,
    InitialFold,
    Knockout,
    Overexpression,
    random_schedule,
)
from biowm.domains.pathway.population import ParameterDraws, draw_parameters
from biowm.domains.pathway.runner import PopulationResult, simulate_population
from biowm.domains.pathway.sbml import PathwayModel, load_model, model_from_sbml
from biowm.domains.pathway.shipped import SHIPPED_MODELS, shipped_drugs, shipped_model_path


def make_simulator(sbml: str = "kholodenko2000", **options: object):  # type: ignore[no-untyped-def]
    """A batched `Simulator` of the SBML model (a file path or a shipped model name)."""
    from biowm.domains.pathway.simulator import PathwaySimulator

    return PathwaySimulator(load_model(sbml), **options)  # type: ignore[arg-type]


DOMAIN = register(
    Domain(
        name="pathway",
        summary="Signalling pathways from any SBML file (libroadrunner): drug schedules, "
                "knockouts, virtual-cell populations",
        make_simulator=make_simulator,
        commands={"simulate": cli.simulate, "train": learn_cli.train,
                  "evaluate": learn_cli.evaluate, "plan": plan_cli.plan},
    )
)

__all__ = [
    "DOMAIN", "SHIPPED_MODELS", "Bolus", "Control", "DoseSchedule", "InitialFold", "Inhibitor",
    "Knockout", "Overexpression", "ParameterDraws", "PathwayModel", "PopulationResult",
    "draw_parameters", "load_model", "make_simulator", "model_from_sbml", "random_schedule",
    "shipped_drugs", "shipped_model_path", "simulate_population",
]

"""Pathway models shipped with biowm: our own encodings, written from the papers' equations.

Each model is specified here (species, parameters, rate laws as in the paper) and written
to SBML under `models/` by `write_shipped_models()`; a test checks the files still match.
Each shipped model also declares its drug: an `Inhibitor` on the parameters the drug acts
on. Sources, equations and units: `models/<name>.README.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway.interventions import FRACTION_PREFIX, Inhibitor
from biowm.domains.pathway.sbml import PathwayModel
from biowm.domains.pathway.sbml_writer import NetworkSpec, Reaction, network_to_sbml

MODELS_DIR = Path(__file__).parent / "models"


def _michaelis(v: str, s: str, k: str) -> str:
    return f"{v} * {s} / ({k} + {s})"


KHOLODENKO2000 = NetworkSpec(
    id="kholodenko2000",
    name="Kholodenko 2000 MAPK cascade with negative feedback (biowm encoding)",
    time_unit="second",
    substance_unit="nanomole",
    notes="""Encoded for biowm from Kholodenko BN (2000) Negative feedback and ultrasensitivity
can bring about oscillations in the mitogen-activated protein kinase cascades. Eur J Biochem
267:1583-1588: ten Michaelis-Menten rate laws v1..v10 (nM/s) with the paper's parameters.

MAPK-PP inhibits MKKK activation (v1) non-competitively, with strength Ki and exponent n.""",
    species={"MKKK": 90.0, "MKKK_P": 10.0, "MKK": 280.0, "MKK_P": 10.0, "MKK_PP": 10.0,
             "MAPK": 280.0, "MAPK_P": 10.0, "MAPK_PP": 10.0},
    parameters={"V1": 2.5, "Ki": 9.0, "n": 1.0, "K1": 10.0, "V2": 0.25, "K2": 8.0,
                "k3": 0.025, "K3": 15.0, "k4": 0.025, "K4": 15.0, "V5": 0.75, "K5": 15.0,
                "V6": 0.75, "K6": 15.0, "k7": 0.025, "K7": 15.0, "k8": 0.025, "K8": 15.0,
                "V9": 0.5, "K9": 15.0, "V10": 0.5, "K10": 15.0},
    parameter_notes={"V1": "nM/s", "Ki": "nM", "n": "dimensionless", "k7": "1/s",
                     "k8": "1/s"},
    reactions=(
        Reaction("v1", ("MKKK",), ("MKKK_P",),
                 "V1 * MKKK / ((1 + (MAPK_PP / Ki) ** n) * (K1 + MKKK))", ("MAPK_PP",),
                 "MKKK activation (inhibited by MAPK-PP)"),
        Reaction("v2", ("MKKK_P",), ("MKKK",), _michaelis("V2", "MKKK_P", "K2"),
                 name="MKKK-P dephosphorylation"),
        Reaction("v3", ("MKK",), ("MKK_P",), "k3 * MKKK_P * MKK / (K3 + MKK)", ("MKKK_P",),
                 "MKK phosphorylation by MKKK-P"),
        Reaction("v4", ("MKK_P",), ("MKK_PP",), "k4 * MKKK_P * MKK_P / (K4 + MKK_P)",
                 ("MKKK_P",), "MKK-P phosphorylation by MKKK-P"),
        Reaction("v5", ("MKK_PP",), ("MKK_P",), _michaelis("V5", "MKK_PP", "K5"),
                 name="MKK-PP dephosphorylation"),
        Reaction("v6", ("MKK_P",), ("MKK",), _michaelis("V6", "MKK_P", "K6"),
                 name="MKK-P dephosphorylation"),
        Reaction("v7", ("MAPK",), ("MAPK_P",), "k7 * MKK_PP * MAPK / (K7 + MAPK)", ("MKK_PP",),
                 "MAPK phosphorylation by MKK-PP"),
        Reaction("v8", ("MAPK_P",), ("MAPK_PP",), "k8 * MKK_PP * MAPK_P / (K8 + MAPK_P)",
                 ("MKK_PP",), "MAPK-P phosphorylation by MKK-PP"),
        Reaction("v9", ("MAPK_PP",), ("MAPK_P",), _michaelis("V9", "MAPK_PP", "K9"),
                 name="MAPK-PP dephosphorylation"),
        Reaction("v10", ("MAPK_P",), ("MAPK",), _michaelis("V10", "MAPK_P", "K10"),
                 name="MAPK-P dephosphorylation"),
    ),
)

GEVA_ZATORSKY2006 = NetworkSpec(
    id="geva_zatorsky2006",
    name="Geva-Zatorsky 2006 p53-Mdm2 negative feedback with an Mdm2 precursor "
         "(biowm encoding)",
    time_unit="hour",
    substance_unit="dimensionless",
    notes="""Encoded for biowm from Geva-Zatorsky N et al. (2006) Oscillations and variability
in the p53 system. Mol Syst Biol 2:2006.0033, model II (p53 x, Mdm2 precursor y0, Mdm2 y):
dx/dt = beta_x - alpha_x x - alpha_k y x / (x + k); dy0/dt = beta_y x - alpha_0 y0;
dy/dt = alpha_0 y0 - alpha_y y. Time in hours, concentrations in arbitrary units.""",
    species={"p53": 0.0, "Mdm2_precursor": 0.1, "Mdm2": 0.8},
    parameters={"beta_x": 0.9, "alpha_x": 0.0, "alpha_k": 1.7, "k": 0.0001, "beta_y": 1.1,
                "alpha_0": 0.8, "alpha_y": 0.8},
    parameter_notes={"beta_x": "p53 synthesis, a.u./h", "alpha_x": "Mdm2-independent p53 "
                     "degradation, 1/h", "alpha_k": "Mdm2-dependent p53 degradation, 1/h",
                     "k": "p53 saturation constant, a.u.", "beta_y": "Mdm2 precursor "
                     "production per p53, 1/h", "alpha_0": "precursor maturation, 1/h",
                     "alpha_y": "Mdm2 degradation, 1/h"},
    reactions=(
        Reaction("p53_synthesis", (), ("p53",), "beta_x", name="p53 synthesis"),
        Reaction("p53_degradation", ("p53",), (), "alpha_x * p53",
                 name="Mdm2-independent p53 degradation"),
        Reaction("p53_mdm2_degradation", ("p53",), (), "alpha_k * Mdm2 * p53 / (p53 + k)",
                 ("Mdm2",), "Mdm2-mediated p53 degradation"),
        Reaction("precursor_production", (), ("Mdm2_precursor",), "beta_y * p53", ("p53",),
                 "p53-driven Mdm2 transcription"),
        Reaction("precursor_maturation", ("Mdm2_precursor",), ("Mdm2",),
                 "alpha_0 * Mdm2_precursor", name="Mdm2 maturation"),
        Reaction("mdm2_degradation", ("Mdm2",), (), "alpha_y * Mdm2", name="Mdm2 degradation"),
    ),
)

SHIPPED_MODELS: dict[str, NetworkSpec] = {
    "kholodenko2000": KHOLODENKO2000,
    "geva_zatorsky2006": GEVA_ZATORSKY2006,
}

# Drug dose-responses are illustrative modelling assumptions (see the READMEs), not fits.
SHIPPED_DRUGS: dict[str, tuple[Inhibitor, ...]] = {
    "kholodenko2000": (
        Inhibitor(name="MEKi", targets=("k7", "k8"), dose_range=(0.0, 1000.0), unit="nM",
                  emax=1.0, ic50=30.0, hill=1.0),
    ),
    "geva_zatorsky2006": (
        Inhibitor(name="nutlin", targets=("alpha_k",), dose_range=(0.0, 10.0), unit="uM",
                  emax=0.9, ic50=1.0, hill=1.0),
    ),
}


def shipped_model_path(name: str) -> Path:
    """The SBML file of a shipped model, e.g. `shipped_model_path("kholodenko2000")`."""
    if name not in SHIPPED_MODELS:
        raise InvalidInputError(f"unknown shipped model {name!r}; shipped models: "
                                f"{', '.join(SHIPPED_MODELS)}")
    return MODELS_DIR / f"{name}.xml"


def shipped_drugs(name: str) -> tuple[Inhibitor, ...]:
    """The drugs declared for a shipped model (empty for any other model)."""
    return SHIPPED_DRUGS.get(name, ())


def controls_for(model: PathwayModel, names: Sequence[str]) -> tuple[Inhibitor, ...]:
    """Controls named on the command line: a drug declared for the (shipped) model acts
    through its dose-response; a kinetic parameter gets a direct fractional inhibition."""
    drugs = {drug.name: drug for drug in shipped_drugs(model.name)}
    # A fractional inhibition's action channel is named "inhibition_<parameter>"; accept it
    # back (a surrogate's action space) as the parameter itself.
    names = [name.removeprefix(FRACTION_PREFIX) if name.startswith(FRACTION_PREFIX) and
             name.removeprefix(FRACTION_PREFIX) in model.parameters else name for name in names]
    unknown = [name for name in names if name not in drugs and name not in model.parameters]
    if unknown:
        offered = [*drugs, *model.parameters]
        raise InvalidInputError(
            f"unknown intervention {', '.join(map(repr, unknown))} in model {model.name}; "
            f"valid: {', '.join(offered) if offered else '(none)'}"
        )
    if len(set(names)) != len(names):
        raise InvalidInputError(f"intervention names repeat: {', '.join(names)}")
    return tuple(drugs[name] if name in drugs else Inhibitor.fraction(name) for name in names)


def write_shipped_models(directory: Path = MODELS_DIR) -> list[Path]:
    """(Re)write every shipped model's SBML file from its specification."""
    written = []
    for name, spec in SHIPPED_MODELS.items():
        path = directory / f"{name}.xml"
        path.write_text(network_to_sbml(spec), encoding="utf-8")
        written.append(path)
    return written

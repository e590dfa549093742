"""Loading SBML: the shipped encodings, curated BioModels files, and refused input."""

from pathlib import Path

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway import (
    SHIPPED_MODELS,
    load_model,
    model_from_sbml,
    shipped_drugs,
    shipped_model_path,
    simulate_population,
)
from biowm.domains.pathway.sbml_writer import network_to_sbml

SHARED_SBML = Path(__file__).resolve().parents[4] / "shared" / "sbml"
needs_shared = pytest.mark.skipif(not SHARED_SBML.is_dir(),
                                  reason=f"curated BioModels files not found at {SHARED_SBML}")

NO_FLOATING = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1">
  <model id="empty">
    <listOfParameters><parameter id="k" value="1" constant="true"/></listOfParameters>
  </model>
</sbml>
"""


def oscillation(series: np.ndarray, dt: float) -> tuple[float, float, float]:
    """(period, min, max) of the sustained part of a sampled oscillation."""
    late = series[len(series) // 3:]
    peaks = np.flatnonzero((late[1:-1] > late[:-2]) & (late[1:-1] >= late[2:])
                           & (late[1:-1] > late.mean()))
    return float(np.diff(peaks).mean() * dt), float(late.min()), float(late.max())


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_shipped_model_loads_and_its_file_matches_its_specification(name):
    path = shipped_model_path(name)
    assert path.read_text() == network_to_sbml(SHIPPED_MODELS[name])
    model = load_model(name)
    assert model.name == name and model.species and model.parameters
    assert model.promoted == {}  # our encodings keep every constant global
    for drug in shipped_drugs(name):
        assert set(drug.targets) <= set(model.parameters)
    assert (path.parent / f"{name}.README.md").is_file()


def test_kholodenko_encoding_oscillates_like_the_paper():
    model = load_model("kholodenko2000")
    assert model.species == ("MKKK", "MKKK_P", "MKK", "MKK_P", "MKK_PP", "MAPK", "MAPK_P",
                             "MAPK_PP")
    assert model.time_unit == "second"
    times = np.arange(0.0, 9000.0, 5.0)
    result = simulate_population(model, times, observe=["MAPK_PP"], workers=1)
    period, low, high = oscillation(result.obs[0, :, 0], 5.0)
    assert 1100 < period < 1500  # ~20 min, undamped
    assert low < 60 and high > 250


@needs_shared
def test_kholodenko_encoding_matches_biomodels_trajectory():
    ours = load_model("kholodenko2000")
    curated = load_model(SHARED_SBML / "BIOMD0000000010.xml")
    # BioModels keeps the constants reaction-local; they are promoted to global names.
    assert curated.promoted["k7"] == "J6.k7" and curated.parameters["k7"] == 0.025
    times = np.arange(0.0, 6000.0, 10.0)
    a = simulate_population(ours, times, workers=1).obs[0]
    b = simulate_population(curated, times, workers=1).obs[0]
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_p53_model_pulses_every_few_hours():
    model = load_model("geva_zatorsky2006")
    assert model.time_unit == "hour"
    times = np.arange(0.0, 60.0, 0.1)
    free = simulate_population(model, times, observe=["p53"], workers=1).obs[0, :, 0]
    period, low, high = oscillation(free, 0.1)
    assert 6 < period < 7.5 and high - low > 0.5


@needs_shared
@pytest.mark.parametrize(("file", "n_species"), [("BIOMD0000000010.xml", 8),
                                                 ("BIOMD0000000009.xml", 26),
                                                 ("BIOMD0000000005.xml", 6)])
def test_curated_biomodels_files_load_and_simulate(file, n_species):
    model = load_model(SHARED_SBML / file)
    assert len(model.species) == n_species and model.parameters
    assert "SBML default" in model.time_unit
    result = simulate_population(model, np.linspace(0, 100, 11), workers=1)
    assert not result.failed.any() and np.isfinite(result.obs).all()


@needs_shared
def test_clashing_local_parameters_get_reaction_prefixed_names():
    model = load_model(SHARED_SBML / "BIOMD0000000009.xml")
    assert model.promoted["r1b_k2"] == "r1b.k2" and model.promoted["r2b_k2"] == "r2b.k2"
    assert "k2" not in model.parameters
    assert set(model.rule_species) == {"K_PP_norm", "KK_PP_norm", "KKK_P_norm", "rel_K_PP_max"}


def test_malformed_and_unreadable_sbml_are_refused(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<sbml><model id='x'>")
    with pytest.raises(InvalidInputError, match="malformed SBML"):
        load_model(broken)
    with pytest.raises(InvalidInputError, match="root element is <html>"):
        model_from_sbml("<html/>")
    with pytest.raises(InvalidInputError, match="no such file"):
        load_model(tmp_path / "missing.xml")


def test_sbml_without_floating_species_is_refused():
    with pytest.raises(InvalidInputError, match="no floating species"):
        model_from_sbml(NO_FLOATING, "empty.xml")


def test_unknown_names_are_refused_with_the_valid_ones():
    model = load_model("kholodenko2000")
    with pytest.raises(InvalidInputError, match=r"unknown species to observe 'ERK'.*MAPK_PP"):
        simulate_population(model, [0.0, 1.0], observe=["ERK"], workers=1)
    with pytest.raises(InvalidInputError, match=r"unknown parameter 'kcat'.*k7"):
        model.check_parameters(["kcat"])

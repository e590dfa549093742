"""Interventions change what they should: drugs, knockouts, overexpression, boluses."""

import numpy as np
import pytest

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway import (
    Bolus,
    DoseSchedule,
    Inhibitor,
    InitialFold,
    Knockout,
    Overexpression,
    load_model,
    random_schedule,
    shipped_drugs,
    simulate_population,
)


@pytest.fixture(scope="module")
def kholodenko():
    return load_model("kholodenko2000")


@pytest.fixture(scope="module")
def p53():
    return load_model("geva_zatorsky2006")


def test_emax_dose_response():
    drug = Inhibitor("D", ("k",), dose_range=(0, 100), unit="nM", emax=0.8, ic50=10, hill=2)
    assert np.allclose(drug.effect([0, 10, 1e9]), [0, 0.4, 0.8])
    assert np.allclose(drug.multiplier(10), 0.6)
    assert np.allclose(Inhibitor.fraction("k").multiplier([0, 0.25, 1]), [1, 0.75, 0])


def test_full_mek_inhibitor_dose_lowers_mapk_pp(kholodenko):
    meki = shipped_drugs("kholodenko2000")
    times = np.linspace(0, 3000, 31)
    runs = DoseSchedule(meki, np.array([0.0, 3000.0]), np.array([[[0.0]], [[1000.0]]]))
    result = simulate_population(kholodenko, times, observe=["MAPK_PP"], schedule=runs,
                                 workers=1)
    no_drug, full = result.obs[0, 10:, 0], result.obs[1, 10:, 0]
    assert full.max() < 5 and no_drug.mean() > 50
    assert np.all(result.doses[1] == 1000.0) and np.all(result.doses[0] == 0.0)


def test_dose_switches_at_segment_boundaries(kholodenko):
    times = np.linspace(0, 4000, 81)
    schedule = DoseSchedule((Inhibitor.fraction("k8"),), np.array([0.0, 2000.0, 4000.0]),
                            np.array([[[0.0], [1.0]]]))
    result = simulate_population(kholodenko, times, observe=["MAPK_PP"], schedule=schedule,
                                 workers=1)
    assert np.all(result.doses[0, times < 2000, 0] == 0)
    assert np.all(result.doses[0, times >= 2000, 0] == 1)
    # k8 = 0 stops MAPK-PP formation: it only decays after the switch.
    after = result.obs[0, times >= 2000, 0]
    assert np.all(np.diff(after) <= 1e-6) and after[-1] < 1


def test_nutlin_raises_p53(p53):
    nutlin = shipped_drugs("geva_zatorsky2006")
    schedule = DoseSchedule.constant(nutlin, [10.0], 1, 48.0)
    times = np.linspace(0, 48, 97)
    free = simulate_population(p53, times, observe=["p53"], workers=1).obs[0, :, 0]
    drugged = simulate_population(p53, times, observe=["p53"], schedule=schedule,
                                  workers=1).obs[0, :, 0]
    assert drugged[48:].mean() > 2 * free[48:].mean()


def test_knockout_holds_species_at_zero(kholodenko):
    result = simulate_population(kholodenko, np.linspace(0, 3000, 31),
                                 observe=["MKK_PP", "MAPK_PP"], knockouts=[Knockout("MKK_PP")],
                                 workers=1)
    assert np.all(result.obs[0, :, 0] == 0.0)
    assert result.obs[0, -1, 1] < 1  # nothing left to phosphorylate MAPK
    # the knocked-out variant is separate from the intact model in the same process
    intact = simulate_population(kholodenko, np.linspace(0, 3000, 31), observe=["MKK_PP"],
                                 workers=1)
    assert intact.obs[0, -1, 0] > 1


def test_bolus_raises_species_at_its_time(p53):
    times = np.linspace(0, 10, 101)
    base = simulate_population(p53, times, observe=["Mdm2"], workers=1).obs[0, :, 0]
    dosed = simulate_population(p53, times, observe=["Mdm2"], workers=1,
                                boluses=[Bolus("Mdm2", 5.0, 2.0)]).obs[0, :, 0]
    before, at = times < 5.0, int(np.flatnonzero(times >= 5.0)[0])
    assert np.allclose(dosed[before], base[before])
    assert dosed[at] == pytest.approx(base[at] + 2.0, rel=1e-5)


def test_overexpression_of_synthesis_and_initial_fold(p53, kholodenko):
    times = np.linspace(0, 24, 49)
    up = Overexpression("p53_up", ("beta_x",), dose_range=(1, 5))
    schedule = DoseSchedule.constant([up], [3.0], 1, 24.0)
    base = simulate_population(p53, times, observe=["Mdm2"], workers=1).obs[0, :, 0]
    more = simulate_population(p53, times, observe=["Mdm2"], schedule=schedule,
                               workers=1).obs[0, :, 0]
    assert more[24:].mean() > 2 * base[24:].mean()
    folded = simulate_population(kholodenko, [0.0, 1.0], observe=["MAPK"], workers=1,
                                 initial_folds=[InitialFold("MAPK", 2.0)])
    assert folded.obs[0, 0, 0] == pytest.approx(560.0)


def test_doses_outside_their_declared_range_are_refused():
    meki = shipped_drugs("kholodenko2000")
    with pytest.raises(InvalidInputError, match=r"MEKi: dose 2000 \(run 0, segment 0\) is "
                                                r"outside its declared range \[0, 1000\] nM"):
        DoseSchedule(meki, np.array([0.0, 1.0]), np.array([[[2000.0]]]))
    with pytest.raises(InvalidInputError, match="outside its declared range"):
        DoseSchedule.constant([Inhibitor.fraction("k7")], [1.5], 2, 10.0)
    with pytest.raises(InvalidInputError, match="outside its declared range"):
        Bolus("MAPK", 1.0, -5.0)
    with pytest.raises(InvalidInputError, match="outside its declared range"):
        InitialFold("MAPK", 1000.0)
    with pytest.raises(InvalidInputError, match="within \\[0, 1\\]"):
        Inhibitor("bad", ("k7",), dose_range=(0, 5))


def test_intervention_names_are_checked_against_the_model(kholodenko):
    times = [0.0, 10.0]
    with pytest.raises(InvalidInputError, match=r"unknown intervention target parameter "
                                                r"'kx'.*valid: V1"):
        simulate_population(kholodenko, times, workers=1,
                            schedule=DoseSchedule.constant([Inhibitor.fraction("kx")], [0.5],
                                                           1, 10.0))
    with pytest.raises(InvalidInputError, match="unknown knockout species 'RAF'"):
        simulate_population(kholodenko, times, knockouts=[Knockout("RAF")], workers=1)
    with pytest.raises(InvalidInputError, match="must come before the last output time"):
        simulate_population(kholodenko, times, boluses=[Bolus("MAPK", 10.0, 1.0)], workers=1)


def test_random_schedules_stay_in_range_and_include_off_segments():
    drug = shipped_drugs("kholodenko2000")[0]
    schedule = random_schedule([drug], 200, 600.0, segments=6, seed=3)
    assert schedule.doses.shape == (200, 6, 1)
    assert schedule.doses.min() == 0.0 and schedule.doses.max() <= 1000.0
    assert 0.1 < (schedule.doses == 0).mean() < 0.4
    assert np.array_equal(random_schedule([drug], 50, 600.0, 6, seed=3).doses,
                          schedule.doses[:50])


def test_fractional_controls_round_trip_through_their_channel_names():
    from biowm.domains.pathway.shipped import controls_for

    model = load_model("kholodenko2000")
    (control,) = controls_for(model, ["k7"])
    assert control.name == "inhibition_k7" and control.targets == ("k7",)
    assert controls_for(model, [control.name]) == (control,)  # a surrogate's action name
    with pytest.raises(InvalidInputError, match="unknown intervention 'inhibition_nope'"):
        controls_for(model, ["inhibition_nope"])

"""`biowm simulate pathway` end to end, and its refusals (exit 2, one line, nothing written)."""

from pathlib import Path

import numpy as np
import pytest

from biowm.cli import run
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import Trajectories
from cli_helpers import one_error_line

SHARED_SBML = Path(__file__).resolve().parents[4] / "shared" / "sbml"


def simulate(capsys, *args):
    code = run(["simulate", "pathway", *map(str, args)])
    return code, capsys.readouterr()


def test_simulate_writes_trajectories_with_doses_and_draws(capsys, tmp_path):
    out = tmp_path / "mapk.parquet"
    code, captured = simulate(capsys, "--sbml", "kholodenko2000", "--observe", "MAPK_PP,MKK_PP",
                              "--intervene", "MEKi,k3", "--t-end", 3000, "--points", 31,
                              "--n", 12, "--segments", 3, "--seed", 4, "--workers", 1,
                              "--out", out)
    assert code == 0, captured.err
    assert "12 virtual cells" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mapk.manifest.json", "mapk.parquet"]
    manifest = Manifest.read(manifest_path_for(out))
    manifest.verify(out)
    assert manifest.config["domain"] == "pathway" and manifest.seed == 4
    assert manifest.config["intervene"] == ["MEKi", "inhibition_k3"]
    data = Trajectories.from_parquet(out)
    data.validate()
    assert data.obs.shape == (12, 31, 2) and data.time_unit == "second"
    assert data.action_space.names == ["MEKi", "inhibition_k3"]
    assert data.static.shape == (12, 22) and float(data.static.abs().max()) > 0
    doses = data.actions.numpy()
    # piecewise constant over 3 segments of 1000 s, within the declared ranges
    assert len(np.unique(doses[0, :, 0])) <= 3
    assert doses[:, :, 0].max() <= 1000 and doses[:, :, 1].max() <= 1
    # the same command again gives the same file content
    again = tmp_path / "again.parquet"
    assert simulate(capsys, "--sbml", "kholodenko2000", "--observe", "MAPK_PP,MKK_PP",
                    "--intervene", "MEKi,k3", "--t-end", 3000, "--points", 31, "--n", 12,
                    "--segments", 3, "--seed", 4, "--workers", 1, "--out", again)[0] == 0
    assert np.array_equal(Trajectories.from_parquet(again).obs.numpy(), data.obs.numpy())


@pytest.mark.skipif(not SHARED_SBML.is_dir(), reason=f"no curated SBML at {SHARED_SBML}")
def test_simulate_accepts_a_curated_file(capsys, tmp_path):
    out = tmp_path / "huang.parquet"
    code, captured = simulate(capsys, "--sbml", SHARED_SBML / "BIOMD0000000009.xml",
                              "--observe", "PP_K", "--intervene", "k7", "--t-end", 500,
                              "--points", 11, "--n", 3, "--workers", 1, "--out", out)
    assert code == 0, captured.err
    assert Trajectories.from_parquet(out).obs.shape == (3, 11, 1)


@pytest.mark.parametrize(("args", "words"), [
    (["--sbml", "kholodenko2000", "--observe", "ERK"],
     "unknown species to observe 'ERK' in model kholodenko2000; valid: MKKK, MKKK_P"),
    (["--sbml", "kholodenko2000", "--intervene", "kcat"],
     "unknown intervention 'kcat' in model kholodenko2000; valid: MEKi, V1, Ki"),
    (["--sbml", "kholodenko2000", "--uncertain", "kcat"], "unknown uncertain parameter 'kcat'"),
    (["--sbml", "nosuchmodel"], "no such file (shipped models: kholodenko2000"),
    (["--sbml", "kholodenko2000", "--n", "0"], "--n >= 1"),
    (["--sbml", "kholodenko2000", "--sigma", "-1"], "--sigma must be"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, args, words):
    out = tmp_path / "x.parquet"
    code, captured = simulate(capsys, *args, "--t-end", 100, "--points", 5, "--out", out)
    assert code == 2
    assert words in one_error_line(captured.err)
    assert list(tmp_path.iterdir()) == []


def test_malformed_and_empty_sbml_files_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("this is not SBML")
    empty = tmp_path / "empty.xml"
    empty.write_text('<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" '
                     'version="1"><model id="m"/></sbml>')
    for path, words in ((bad, "malformed SBML"), (empty, "no floating species")):
        out = tmp_path / "out" / "x.parquet"
        out.parent.mkdir(exist_ok=True)
        code, captured = simulate(capsys, "--sbml", path, "--t-end", 10, "--out", out)
        assert code == 2 and words in one_error_line(captured.err)
        assert list(out.parent.iterdir()) == []

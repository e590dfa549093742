"""The `biowm` command line, in-process through `biowm.cli.run` and as a real process."""

import contextlib
import io
import subprocess
import sys

import pytest
import torch

from biowm.cli import run
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import Trajectories
from biowm.domains.glucose import cli as glucose_cli
from biowm.domains.glucose.metrics import glycemic_metrics
from cli_helpers import one_error_line

# --- verbs and domains --------------------------------------------------------------------


def test_domains_lists_glucose_and_its_verbs(capsys):
    assert run(["domains"]) == 0
    out = capsys.readouterr().out
    assert "glucose" in out and "simulate" in out and "UVA/Padova" in out


def test_help_and_bare_invocation_print_usage(capsys):
    assert run(["--help"]) == 0
    assert "usage: biowm <verb> <domain>" in capsys.readouterr().out
    assert run([]) == 2  # no command at all is a usage error, reported on stderr
    assert "usage: biowm" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["frobnicate", "glucose"], "unknown verb 'frobnicate'"),
        (["simulate", "heart"],
         "unknown domain 'heart'; registered domains: "
         "['cell', 'glucose', 'pathway', 'sepsis', 'tumour']"),
        (["simulate"], "name a domain (cell, glucose, pathway, sepsis, tumour)"),
        (["simulate", "--n", "3"], "name a domain"),
        (["train", "glucose"], "does not implement 'train'"),
        (["simulate", "glucose"], "Missing option '--out'"),
        (["simulate", "glucose", "--out", "x.parquet", "--bogus"], "No such option: --bogus"),
        (["simulate", "glucose", "--out", "x.parquet", "--n", "three"], "'--n'"),
    ],
)
def test_usage_errors_exit_2_with_one_error_line(capsys, argv, words):
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert words in one_error_line(captured.err)
    assert captured.out == ""


def test_simulate_glucose_help_lists_its_options(capsys):
    assert run(["simulate", "glucose", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--out", "--cohort", "--n", "--days", "--controller", "--seed", "--patient",
                   "--replay", "--sensor-minutes", "--shard-size"):
        assert option in out, option


# --- cohort simulation --------------------------------------------------------------------


def simulate(capsys, out, *options):
    code = run(["simulate", "glucose", "--out", str(out), *map(str, options)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """`cohort_run(label, seed)`: a 3-subject, 1-day cohort in its own folder, run once."""
    runs = {}

    def get(label: str, seed: int):
        if label not in runs:
            path = tmp_path_factory.mktemp(label) / "x.parquet"
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run(["simulate", "glucose", "--n", "3", "--days", "1", "--seed",
                            str(seed), "--out", str(path)])
            runs[label] = (code, out.getvalue(), err.getvalue(), path)
        return runs[label]

    return get


def test_cohort_writes_parquet_manifest_and_prints_a_table(cohort_run):
    code, stdout, stderr, path = cohort_run("a", 0)
    assert code == 0, stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.manifest.json", "x.parquet"]
    manifest = Manifest.read(manifest_path_for(path))
    assert manifest_path_for(path).name == "x.manifest.json"
    assert manifest.kind == "trajectories" and manifest.seed == 0
    config = manifest.config
    assert (config["domain"], config["n"], config["days"], config["controller"]) == (
        "glucose", 3, 1, "basal-bolus",
    )
    assert config["cohort"] == "all" and config["patient"] is None
    assert config["sensor_minutes"] == 5
    assert config["n_subjects"] == 3 and config["n_rows"] == 3 * 288
    manifest.verify(path)  # the recorded hash is the file's
    logged = Trajectories.from_parquet(path)
    assert len(logged) == 3 and logged.obs.shape == (3, 288, 2)
    assert logged.obs_space.names == ["cgm_mg_dl", "bg_mg_dl"]
    assert logged.action_space.names == ["insulin_u_per_min", "carbs_g"]
    assert logged.subject_ids == [f"adolescent#00{i}/00000{i - 1}" for i in (1, 2, 3)]
    assert torch.equal(logged.times[0], torch.arange(0, 1440, 5, dtype=torch.float64))
    logged.validate()
    # the outcome summary in the manifest is the mean of the metrics of the logged BG
    metrics = glycemic_metrics(logged.obs[..., 1])
    for name, value in config["outcomes_mean"].items():
        assert value == pytest.approx(float(metrics[name].mean()), abs=1e-3), name
    assert "basal-bolus: 3 subjects × 1 day(s)" in stdout
    assert "tir" in stdout and "adolescent" in stdout
    assert "wrote 864 rows for 3 subjects" in stderr


def test_same_seed_gives_identical_data_and_another_seed_differs(cohort_run):
    (_, _, _, a), (_, _, _, b), (_, _, _, c) = (
        cohort_run(label, seed) for label, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert a.read_bytes() == b.read_bytes()
    ma, mb, mc = (Manifest.read(manifest_path_for(p)) for p in (a, b, c))
    assert ma.content_sha256 == mb.content_sha256
    assert ma.config == mb.config
    assert mc.seed == 1 and ma.content_sha256["x.parquet"] != mc.content_sha256["x.parquet"]
    ta, tc = Trajectories.from_parquet(a), Trajectories.from_parquet(c)
    assert ta.subject_ids == tc.subject_ids  # same patients …
    assert not torch.equal(ta.obs, tc.obs)  # … different meals and sensor noise
    assert not torch.equal(ta.actions[..., 1], tc.actions[..., 1])


def test_one_named_patient_repeated(capsys, tmp_path):
    out = tmp_path / "p.parquet"
    code, _, stderr = simulate(capsys, out, "--patient", "adult#002", "--n", "2")
    assert code == 0, stderr
    logged = Trajectories.from_parquet(out)
    assert logged.subject_ids == ["adult#002/000000", "adult#002/000001"]
    assert torch.equal(logged.static[0], logged.static[1])  # same patient …
    assert not torch.equal(logged.obs[0], logged.obs[1])  # … two subjects' days
    manifest = Manifest.read(tmp_path / "p.manifest.json")
    assert manifest.config["patient"] == "adult#002" and manifest.config["n_subjects"] == 2


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if the cohort engine is ever reached."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulation started before the input was validated")

    monkeypatch.setattr(glucose_cli, "simulate_cohort", must_not_run)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--patient", "adult#099"], "valid patients: adolescent#001"),
        (["--controller", "pid"], "unknown controller 'pid'; choose one of basal-bolus, clinician"),
        (["--cohort", "elderly"], "unknown cohort 'elderly'"),
        (["--n", "0"], "--n must be >= 1, got 0"),
        (["--n", "-4"], "--n must be >= 1"),
        (["--days", "0"], "--days must be >= 1"),
        (["--sensor-minutes", "0"], "--sensor-minutes must be >= 1"),
        (["--shard-size", "0"], "--shard-size must be >= 1"),
    ],
)
def test_bad_cohort_options_exit_2_before_any_work(
    capsys, tmp_path, no_simulation, options, words
):
    out = tmp_path / "x.parquet"
    code, stdout, stderr = simulate(capsys, out, "--n", "2", *options)
    assert code == 2
    assert words in one_error_line(stderr)
    assert list(tmp_path.iterdir()) == []


def test_unknown_patient_message_lists_every_valid_patient(capsys, tmp_path, no_simulation):
    code, _, stderr = simulate(capsys, tmp_path / "x.parquet", "--patient", "adult#011")
    assert code == 2
    line = one_error_line(stderr)
    assert "unknown patient 'adult#011'" in line
    for group in ("adolescent", "adult", "child"):
        for i in range(1, 11):
            assert f"{group}#{i:03d}" in line


@pytest.mark.parametrize("name", ["x.csv", "x.parquet.tmp", "x"])
def test_cohort_output_must_be_parquet(capsys, tmp_path, no_simulation, name):
    code, _, stderr = simulate(capsys, tmp_path / name, "--n", "1")
    assert code == 2 and "use .parquet" in one_error_line(stderr)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_fails_before_any_work_and_leaves_no_file(capsys, tmp_path, no_simulation):
    # tests may run as root, so permissions cannot make a place unwritable: use paths that
    # cannot be created whoever you are
    regular = tmp_path / "a-file"
    regular.write_text("not a directory")
    (tmp_path / "a-dir.parquet").mkdir()
    cases = [
        (tmp_path / "missing" / "x.parquet", "does not exist"),
        (regular / "x.parquet", "is not a directory"),
        (tmp_path / "a-dir.parquet", "is a directory"),
    ]
    for out, words in cases:
        code, _, stderr = simulate(capsys, out, "--n", "1")
        assert code == 2, out
        assert words in one_error_line(stderr), stderr
        assert not (tmp_path / "missing").exists()
    assert regular.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir.parquet", "a-file"]
    assert list((tmp_path / "a-dir.parquet").iterdir()) == []


# --- as a process -------------------------------------------------------------------------


def biowm_process(*args, module="biowm", cwd=None):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
        cwd=cwd, check=False,
    )


def test_python_dash_m_biowm_lists_domains():
    done = biowm_process("domains")
    assert done.returncode == 0, done.stderr
    assert "glucose" in done.stdout


def test_python_dash_m_biowm_cli_exits_2_on_bad_input(tmp_path):
    done = biowm_process(
        "simulate", "glucose", "--patient", "nobody", "--out", "x.parquet",
        module="biowm.cli", cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "unknown patient 'nobody'" in one_error_line(done.stderr)
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_biowm_replays_a_file(tmp_path):
    (tmp_path / "in.csv").write_text("minute,carbs_g_per_min,insulin_u_per_min\n0,0,0\n1,5,0\n")
    done = biowm_process(
        "simulate", "glucose", "--replay", "in.csv", "--patient", "child#001", "--out",
        "out.csv", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "patient,minute,bg_mg_dl,cgm_noise_free_mg_dl"
    assert [line.split(",")[:2] for line in lines[1:]] == [["child#001", "0"], ["child#001", "1"]]
    assert "replayed 1 patient(s), 2 patient-minutes" in done.stderr


def test_patient_and_cohort_together_are_refused(tmp_path, capsys):
    out = tmp_path / "x.parquet"
    code = run(["simulate", "glucose", "--patient", "adult#002", "--cohort", "child",
                "--out", str(out)])
    assert code == 2
    assert "--patient or --cohort, not both" in capsys.readouterr().err
    assert not out.exists()

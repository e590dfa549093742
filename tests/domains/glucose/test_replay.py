"""`biowm simulate glucose --replay`: validation of inputs.csv and the replay output."""

import contextlib
import csv
import io
import re
import tempfile
from importlib import resources
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biowm.cli import run
from biowm.core.manifest import Manifest
from biowm.domains.glucose import cli as glucose_cli
from biowm.domains.glucose.replay import OUTPUT_COLUMNS, read_replay_inputs, replay

HEADER = ["patient", "minute", "carbs_g_per_min", "insulin_u_per_min"]


def _steady_state_bg() -> dict[str, float]:
    """Plasma glucose x0[3] / Vg of every patient, from the published parameter table."""
    text = resources.files("biowm.domains.glucose").joinpath("data", "vpatient_params.csv")
    rows = csv.DictReader(text.read_text().splitlines())
    return {r["Name"]: float(r["x0_ 4"]) / float(r["Vg"]) for r in rows}


STEADY_BG = _steady_state_bg()


def cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def write_rows(path: Path, header, rows, blank_before=()) -> None:
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        if i in blank_before:
            lines.append("")
        lines.append(",".join(str(v) for v in row))
    path.write_text("\n".join(lines) + "\n")


def read_output(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def replay_cli(tmp: Path, inputs: Path, *extra) -> tuple[int, str, str, Path]:
    out = tmp / "out.csv"
    code, stdout, stderr = cli(
        ["simulate", "glucose", "--replay", inputs, "--out", out, *extra]
    )
    return code, stdout, stderr, out


# --- good inputs --------------------------------------------------------------------------


def meal_rows(patient, minutes, basal, meal_at=None, grams=0.0):
    rows, left = [], 0.0
    for m in range(minutes):
        if m == meal_at:
            left = grams
        carbs = min(5.0, left)
        left -= carbs
        rows.append([patient, m, carbs, basal])
    return rows


def test_two_patients_by_column_replay_in_one_batch(tmp_path):
    a = meal_rows("adult#001", 40, 0.0139, meal_at=5, grams=20.0)
    c = meal_rows("child#002", 25, 0.005)
    # interleave the two patients' rows: each patient's own minutes stay in order
    rows = [r for pair in zip(a, c, strict=False) for r in pair] + a[len(c):]
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, HEADER, rows)
    code, _, stderr, out = replay_cli(tmp_path, inputs)
    assert code == 0, stderr
    assert "replayed 2 patient(s), 65 patient-minutes" in stderr
    columns, table = read_output(out)
    assert columns == ["patient", "minute", "bg_mg_dl", "cgm_noise_free_mg_dl"]
    assert tuple(columns) == OUTPUT_COLUMNS
    assert len(table) == 65
    for name, length in (("adult#001", 40), ("child#002", 25)):
        mine = [r for r in table if r["patient"] == name]
        assert [int(r["minute"]) for r in mine] == list(range(length))
        assert float(mine[0]["bg_mg_dl"]) == pytest.approx(STEADY_BG[name], abs=1e-5)
        assert float(mine[0]["cgm_noise_free_mg_dl"]) == pytest.approx(STEADY_BG[name], abs=1e-5)
    # patients in order of first appearance, each patient's rows contiguous
    assert [r["patient"] for r in table] == ["adult#001"] * 40 + ["child#002"] * 25
    # the meal raises adult#001's glucose over the following half hour
    adult = [float(r["bg_mg_dl"]) for r in table[:40]]
    assert adult[-1] > adult[5] + 5.0
    # the file holds what the API computes
    bg, gsub = replay(read_replay_inputs(inputs, None))
    assert adult == pytest.approx(bg[0, :40].tolist(), abs=1e-6)
    assert [float(r["cgm_noise_free_mg_dl"]) for r in table[40:]] == pytest.approx(
        gsub[1, :25].tolist(), abs=1e-6
    )


def test_single_patient_without_column_uses_patient_option(tmp_path):
    inputs = tmp_path / "inputs.csv"
    rows = [r[1:] for r in meal_rows("x", 30, 0.02)]
    write_rows(inputs, HEADER[1:], rows)
    code, _, stderr, out = replay_cli(tmp_path, inputs, "--patient", "adolescent#004")
    assert code == 0, stderr
    columns, table = read_output(out)
    assert columns == list(OUTPUT_COLUMNS)
    assert [r["patient"] for r in table] == ["adolescent#004"] * 30
    assert [int(r["minute"]) for r in table] == list(range(30))
    assert float(table[0]["bg_mg_dl"]) == pytest.approx(STEADY_BG["adolescent#004"], abs=1e-5)


def test_patient_option_selects_one_patient_of_a_patient_column(tmp_path):
    inputs = tmp_path / "inputs.csv"
    rows = meal_rows("adult#003", 10, 0.01) + meal_rows("child#007", 12, 0.004)
    rows[3][2] = "oops"  # a malformed row of a patient that is not replayed is not read
    write_rows(inputs, HEADER, rows[10:] + rows[:10])
    code, _, stderr, out = replay_cli(tmp_path, inputs, "--patient", "child#007")
    assert code == 0, stderr
    _, table = read_output(out)
    assert {r["patient"] for r in table} == {"child#007"} and len(table) == 12


def test_replaced_output_is_whole_and_atomic(tmp_path):
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, HEADER, meal_rows("adult#005", 3, 0.01))
    (tmp_path / "out.csv").write_text("old content\n")
    code, _, stderr, out = replay_cli(tmp_path, inputs)
    assert code == 0, stderr
    assert len(read_output(out)[1]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "inputs.csv", "out.csv", "out.manifest.json"
    ]
    manifest = Manifest.read(tmp_path / "out.manifest.json")
    assert manifest.kind == "replay"
    manifest.verify(out)
    manifest.verify(inputs, name="inputs")


# --- bad inputs ---------------------------------------------------------------------------

GOOD = [["adult#001", 0, 0, 0.01], ["adult#001", 1, 0, 0.01], ["adult#001", 2, 5, 0.01]]


def with_cell(row_index, column, value, rows=GOOD):
    rows = [list(r) for r in rows]
    rows[row_index][HEADER.index(column)] = value
    return rows


BAD_CASES = {
    # id: (header, rows, extra args, line, column, words in the message)
    "missing column": (HEADER[:3], [r[:3] for r in GOOD], [], 1, "insulin_u_per_min",
                       "missing column"),
    "nan": (HEADER, with_cell(1, "carbs_g_per_min", "nan"), [], 3, "carbs_g_per_min",
            "not finite"),
    "inf": (HEADER, with_cell(2, "insulin_u_per_min", "inf"), [], 4, "insulin_u_per_min",
            "not finite"),
    "empty cell": (HEADER, with_cell(1, "insulin_u_per_min", ""), [], 3, "insulin_u_per_min",
                   "is empty"),
    "short row": (HEADER, [GOOD[0], GOOD[1][:3], GOOD[2]], [], 3, "insulin_u_per_min",
                  "is empty"),
    "not a number": (HEADER, with_cell(0, "minute", "zero"), [], 2, "minute", "not a number"),
    "negative dose": (HEADER, with_cell(2, "insulin_u_per_min", "-0.01"), [], 4,
                      "insulin_u_per_min", "negative"),
    "negative carbs": (HEADER, with_cell(1, "carbs_g_per_min", "-2"), [], 3, "carbs_g_per_min",
                       "negative"),
    "carbs above 5 g/min": (HEADER, with_cell(2, "carbs_g_per_min", "5.01"), [], 4,
                            "carbs_g_per_min", "exceeds the eating rate"),
    "insulin above pump range": (HEADER, with_cell(1, "insulin_u_per_min", "150"), [], 3,
                                 "insulin_u_per_min", "exceeds"),
    "gap in minutes": (HEADER, with_cell(2, "minute", "3"), [], 4, "minute", "expected 2"),
    "fractional minute": (HEADER, with_cell(1, "minute", "1.5"), [], 3, "minute",
                          "expected 1"),
    "minute not starting at 0": (HEADER, [[p, m + 1, c, i] for p, m, c, i in GOOD], [], 2,
                                 "minute", "expected 0"),
    "unknown patient": (HEADER, with_cell(1, "patient", "adult#011"), [], 3, "patient",
                        "valid patients"),
    "empty patient": (HEADER, with_cell(2, "patient", ""), [], 4, "patient", "is empty"),
    "no patient column and no --patient": (HEADER[1:], [r[1:] for r in GOOD], [], 1, "patient",
                                           "--patient"),
}


@pytest.mark.parametrize("old_output", [False, True], ids=["no-old-out", "old-out"])
@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_input_exits_2_naming_line_and_column_and_writes_nothing(
    tmp_path, monkeypatch, case, old_output
):
    header, rows, extra, line, column, words = BAD_CASES[case]

    def must_not_run(*args, **kwargs):
        raise AssertionError("replay ran on invalid inputs")

    monkeypatch.setattr(glucose_cli, "replay", must_not_run)
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, header, rows)
    if old_output:
        (tmp_path / "out.csv").write_text("old content\n")
    code, stdout, stderr, out = replay_cli(tmp_path, inputs, *extra)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert re.search(rf"\bline {line}\b", lines[0]), lines[0]
    assert f"'{column}'" in lines[0], lines[0]
    assert words in lines[0]
    assert stdout == ""
    if old_output:
        assert out.read_text() == "old content\n"
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["inputs.csv"] + (["out.csv"] if old_output else [])
    )


def test_line_numbers_count_blank_lines(tmp_path):
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, HEADER, with_cell(2, "carbs_g_per_min", "lots"), blank_before={1, 2})
    code, _, stderr, out = replay_cli(tmp_path, inputs)
    assert code == 2 and "error: line 6: column 'carbs_g_per_min'" in stderr, stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("replay_csv", "out", "patient", "words"),
    [
        ("inputs.csv", "out.csv", "adult#011", "valid patients: adolescent#001"),
        ("inputs.csv", "replay.parquet", "adult#001", "use a .csv path"),
        ("missing.csv", "out.csv", "adult#001", "file not found"),
        ("inputs.csv", "no/such/dir/out.csv", "adult#001", "does not exist"),
    ],
)
def test_bad_replay_arguments_exit_2(tmp_path, monkeypatch, replay_csv, out, patient, words):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "inputs.csv", HEADER[1:], [r[1:] for r in GOOD])
    code, _, stderr = cli(
        ["simulate", "glucose", "--replay", replay_csv, "--out", out, "--patient", patient]
    )
    assert code == 2 and stderr.startswith("error: ") and words in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.csv"]


def test_header_only_file_is_refused(tmp_path):
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, HEADER, [])
    code, _, stderr, out = replay_cli(tmp_path, inputs)
    assert code == 2 and "no input rows" in stderr
    assert not out.exists()


# --- properties ---------------------------------------------------------------------------

PATIENTS = ["adult#001", "child#003", "adolescent#010", "adult#008"]


@st.composite
def valid_tables(draw):
    """A valid inputs table: (header, rows, extra CLI args, {patient: length})."""
    with_column = draw(st.booleans())
    if with_column:
        names = draw(st.lists(st.sampled_from(PATIENTS), min_size=1, max_size=2, unique=True))
    else:
        names = [draw(st.sampled_from(PATIENTS))]
    lengths = {n: draw(st.integers(1, 12)) for n in names}
    order = draw(st.permutations([n for n in names for _ in range(lengths[n])]))
    formats = st.sampled_from(["{:.2f}", "{:g}", "{:.4e}", "{!r}"])
    rows, seen = [], dict.fromkeys(names, 0)
    for name in order:
        carbs = draw(st.integers(0, 500)) / 100.0
        insulin = draw(st.integers(0, 3000)) / 10000.0
        row = [seen[name], draw(formats).format(carbs), draw(formats).format(insulin)]
        rows.append([name, *row] if with_column else row)
        seen[name] += 1
    header = HEADER if with_column else HEADER[1:]
    extra = [] if with_column else ["--patient", names[0]]
    return header, rows, extra, lengths


# For each column: ways to make a cell invalid. `m` is the minute that row should have.
CORRUPTIONS = {
    "minute": [lambda m: "", lambda m: "x", lambda m: "nan", lambda m: "inf",
               lambda m: str(m + 1), lambda m: str(m - 1), lambda m: f"{m}.5"],
    "carbs_g_per_min": [lambda m: "", lambda m: "abc", lambda m: "nan", lambda m: "-inf",
                        lambda m: "-0.5", lambda m: "5.5", lambda m: "1e9"],
    "insulin_u_per_min": [lambda m: "", lambda m: "1e400", lambda m: "NaN",
                          lambda m: "-1", lambda m: "101", lambda m: "two"],
    "patient": [lambda m: "", lambda m: "adult#099", lambda m: "nobody"],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_tables(), st.data())
def test_any_corrupted_cell_is_reported_with_its_line_and_column(table, data):
    header, rows, extra, _ = table
    r = data.draw(st.integers(0, len(rows) - 1), label="row")
    column = data.draw(st.sampled_from([c for c in header]), label="column")
    minute = int(rows[r][header.index("minute")])
    corrupt = data.draw(st.sampled_from(CORRUPTIONS[column]), label="corruption")
    value = corrupt(minute)
    rows = [list(row) for row in rows]
    rows[r][header.index(column)] = value
    blanks = set(data.draw(st.lists(st.integers(0, len(rows)), max_size=3), label="blanks"))
    line = 2 + r + sum(1 for b in blanks if b <= r)  # header is line 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs.csv"
        write_rows(inputs, header, rows, blank_before=blanks)
        code, _, stderr, out = replay_cli(tmp, inputs, *extra)
        assert code == 2, stderr
        message = stderr.strip()
        assert "\n" not in message
        assert message.startswith(f"error: line {line}: column '{column}'"), (message, value)
        assert not out.exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_tables())
def test_any_valid_table_replays(table):
    header, rows, extra, lengths = table
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs.csv"
        write_rows(inputs, header, rows)
        code, _, stderr, out = replay_cli(tmp, inputs, *extra)
        assert code == 0, stderr
        columns, output = read_output(out)
        assert tuple(columns) == OUTPUT_COLUMNS
        assert len(output) == sum(lengths.values())
        for name, length in lengths.items():
            mine = [r for r in output if r["patient"] == name]
            assert [int(r["minute"]) for r in mine] == list(range(length))
            assert float(mine[0]["bg_mg_dl"]) == pytest.approx(STEADY_BG[name], abs=1e-5)
            assert all(float(r["bg_mg_dl"]) > 0 for r in mine)


def test_replay_api_pads_shorter_patients_and_reports_lengths(tmp_path):
    inputs = tmp_path / "inputs.csv"
    write_rows(inputs, HEADER, meal_rows("adult#001", 4, 0.01) + meal_rows("child#001", 2, 0.0))
    parsed = read_replay_inputs(inputs, None)
    assert parsed.patients == ["adult#001", "child#001"] and parsed.lengths == [4, 2]
    assert parsed.carbs_g_per_min.shape == (2, 4)
    assert torch.equal(parsed.insulin_u_per_min[1], torch.zeros(4, dtype=torch.float64))

"""`biowm demo --quick`: the whole pipeline (data, training, evaluation, control, report)
at the reduced size CI can afford."""

import json

from biowm.cli import run


def test_quick_demo_runs_end_to_end_and_writes_report_and_results(tmp_path, capsys):
    assert run(["demo", str(tmp_path), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "report is" in printed and "report.html" in printed
    bench = tmp_path / "benchmark"
    results = json.loads((bench / "results.json").read_text())
    for name in ("persistence", "linear", "world_model"):
        model = results["models"][name]
        assert set(model["rmse_mg_dl"]) == {"30", "60", "120"}
        assert all(v > 0 for v in model["rmse_mg_dl"].values())
        assert 0.0 <= model["coverage90"]["60"] <= 1.0
        assert model["crps"] > 0
        assert set(model["counterfactual_rmse_mg_dl"]) == {"30", "60", "120"}
        assert (bench / "models" / name / "card.md").is_file()
    for name in ("basal-bolus", "closed-loop basal-bolus", "closed-loop mpc",
                 "closed-loop mpc-oracle"):
        assert set(results["controllers"][name]) >= {"tir", "tbr70", "tbr54", "tar180",
                                                       "lbgi", "hbgi"}
    assert "data/train.parquet" in results["manifest"]["content_sha256"]
    report = (bench / "report.html").read_text()
    for section in ("Forecast accuracy", "Controllers", "Model card", "data:image/png"):
        assert section in report
    assert (tmp_path / "glucose_clinician.parquet").is_file()

"""Helpers shared by the CLI tests (importable because tests/ holds the root conftest)."""

import importlib


def one_error_line(stderr: str) -> str:
    """The single `error: …` line a refused CLI call must print."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def record_benchmark_settings(monkeypatch, module: str) -> list:
    """Replace `module.run_benchmark` by a stub that records its settings and writes
    tables.md; returns the list the settings are appended to."""
    benchmark = importlib.import_module(module)
    seen = []

    def fake_run(out, settings, log=print):
        seen.append(settings)
        (out / "tables.md").write_text("tables\n")
        return {}

    monkeypatch.setattr(benchmark, "run_benchmark", fake_run)
    return seen

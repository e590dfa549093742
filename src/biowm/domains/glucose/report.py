"""The glucose benchmark report: forecast fan charts, AGP percentiles, time-in-range bars,
comparison tables and the world model's card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from biowm.report.html import Report

RANGES = (("<54", -1e9, 54, "#8b0000"), ("54–69", 54, 70, "#e04040"),
          ("70–180", 70, 180.0001, "#3a9a3a"), ("181–250", 180.0001, 250.0001, "#f0b030"),
          (">250", 250.0001, 1e9, "#d07000"))


def fan_chart(examples: dict[str, Any], models: list[str]) -> Figure:
    n = len(examples[models[0]]["truth"])
    figure = Figure(figsize=(4.2 * n, 3.2 * len(models)))
    axes = figure.subplots(len(models), n, squeeze=False)
    for row, name in enumerate(models):
        ex = examples[name]
        step = ex["step_minutes"]
        for col in range(n):
            ax = axes[row][col]
            history = np.array(ex["history"][col])
            truth = np.array(ex["truth"][col])
            past = -step * np.arange(len(history) - 1, -1, -1)
            future = step * np.arange(1, len(truth) + 1)
            q = {k: np.array(v[col]) for k, v in ex["quantiles"].items()}
            ax.plot(past / 60, history, color="black", lw=1)
            ax.fill_between(future / 60, q["0.05"], q["0.95"], color="C0", alpha=0.2,
                            label="90 % interval")
            ax.fill_between(future / 60, q["0.25"], q["0.75"], color="C0", alpha=0.4,
                            label="50 % interval")
            ax.plot(future / 60, q["0.5"], color="C0", lw=1.5, label="median")
            ax.plot(future / 60, truth, color="black", ls="--", lw=1, label="truth")
            ax.axhspan(70, 180, color="green", alpha=0.05)
            ax.set_title(f"{name}, meal window {col + 1}", fontsize=9)
            ax.set_xlabel("hours from now")
            ax.set_ylabel("CGM (mg/dL)")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def agp_chart(traces: dict[str, Any]) -> Figure:
    names = [n for n, t in traces.items() if t.get("bg")]
    figure = Figure(figsize=(4.2 * max(len(names), 1), 3.4))
    axes = figure.subplots(1, max(len(names), 1), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=False):
        bg = np.array(traces[name]["bg"])  # [subjects, samples] at 5 min
        per_day = 288
        days = bg.shape[1] // per_day
        by_time = bg[:, : days * per_day].reshape(bg.shape[0], days, per_day)
        by_time = by_time.transpose(2, 0, 1).reshape(per_day, -1)
        hours = np.arange(per_day) * 5 / 60
        p = {q: np.percentile(by_time, q, axis=1) for q in (5, 25, 50, 75, 95)}
        ax.fill_between(hours, p[5], p[95], color="C1", alpha=0.2, label="5–95 %")
        ax.fill_between(hours, p[25], p[75], color="C1", alpha=0.45, label="25–75 %")
        ax.plot(hours, p[50], color="C1", lw=1.5, label="median")
        ax.axhline(70, color="red", lw=0.8)
        ax.axhline(180, color="orange", lw=0.8)
        ax.set_ylim(30, 400)
        ax.set_title(f"AGP: {name}", fontsize=9)
        ax.set_xlabel("time of day (h)")
        ax.set_ylabel("plasma glucose (mg/dL)")
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def tir_bars(traces: dict[str, Any]) -> Figure:
    names = [n for n, t in traces.items() if t.get("bg")]
    figure = Figure(figsize=(1.6 * max(len(names), 1) + 2, 3.4))
    ax = figure.subplots()
    for i, name in enumerate(names):
        bg = np.array(traces[name]["bg"]).ravel()
        bottom = 0.0
        for label, low, high, color in RANGES:
            share = 100 * np.mean((bg >= low) & (bg < high))
            ax.bar(i, share, bottom=bottom, color=color, label=label if i == 0 else None)
            if share > 4:
                ax.text(i, bottom + share / 2, f"{share:.0f}%", ha="center", va="center",
                        fontsize=8, color="white")
            bottom += share
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("% of time")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    figure.tight_layout()
    return figure


def build_report(results: dict[str, Any], out: Path) -> Path:
    """Write `out/report.html` from `run_benchmark` results (with its in-memory extras)."""
    report = Report("biowm — glucose world models: forecasting, counterfactuals, control")
    report.paragraph(
        "Virtual patients: UVA/Padova 2008 (biowm's batched implementation). Models trained "
        "on logs of a noisy clinician policy for patients #001–#007, validated on #008, "
        "tested on #009–#010 of each age group. Closed loop: unannounced meal-size errors "
        "and CGM noise, consensus metrics on true plasma glucose.", note=True)
    report.heading("Forecast accuracy on held-out patients")
    models = list(results["models"])
    header = ["model", "RMSE 30", "RMSE 60", "RMSE 120", "CRPS", "cov50 60", "cov90 60",
              "cov90 120", "CF RMSE 60", "CF RMSE 120"]
    rows = []
    for name in models:
        r = results["models"][name]
        rows.append([name, *(r["rmse_mg_dl"].get(m, float("nan")) for m in ("30", "60", "120")),
                     r["crps"], 100 * r["coverage50"].get("60", float("nan")),
                     100 * r["coverage90"].get("60", float("nan")),
                     100 * r["coverage90"].get("120", float("nan")),
                     r["counterfactual_rmse_mg_dl"].get("60", float("nan")),
                     r["counterfactual_rmse_mg_dl"].get("120", float("nan"))])
    report.table(header, rows)
    report.paragraph("RMSE and CRPS in mg/dL, coverage in %. CF: counterfactual futures at "
                     "meal times (skipped bolus, doubled bolus, 2-h basal suspension) scored "
                     "against the simulator's own response.", note=True)
    if "fan_examples" in results:
        shown = [m for m in ("linear", "world_model") if m in results["fan_examples"]]
        report.figure(fan_chart(results["fan_examples"], shown),
                      "Forecast fan charts at meal times: intervals against the truth")
    report.heading("Controllers")
    ctrl = results["controllers"]
    keys = list(next(iter(ctrl.values())))
    report.table(["controller", *keys], [[n, *(r[k] for k in keys)] for n, r in ctrl.items()])
    if results.get("closed_loop"):
        loop = results["closed_loop"]
        report.paragraph(f"Closed loop: {len(loop['patients'])} patients, {loop['days']} "
                         "days; means over seeds.", note=True)
    traces = results.get("closed_loop_traces", {})
    if any(t.get("bg") for t in traces.values()):
        report.figure(agp_chart(traces), "Ambulatory glucose profile per controller (seed 1)")
        report.figure(tir_bars(traces), "Time in ranges per controller (seed 1)")
    card = out / "models" / "world_model" / "card.md"
    if card.is_file():
        report.heading("Model card: world model")
        report.preformatted(card.read_text())
    path = out / "report.html"
    report.write(path)
    return path

"""What `biowm plan pathway` writes beside results.json: a markdown table and a figure of
the planned dose schedule against its constant reference, as verified in the simulator."""

from __future__ import annotations

import io

import numpy as np

from biowm.domains.pathway.planning import Attempt
from biowm.plan.dose_schedule import DoseProblem, meets


def _doses(segment_doses: np.ndarray, units: tuple[str, ...]) -> str:
    if segment_doses.shape[1] == 1:
        return ", ".join(f"{d:.3g}" for d in segment_doses[:, 0]) + f" {units[0]}"
    return "; ".join("(" + ", ".join(f"{d:.3g}" for d in row) + ")" for row in segment_doses)


def _cumulative(values: np.ndarray, units: tuple[str, ...], time_unit: str) -> str:
    return ", ".join(f"{v:.4g} {u}·{time_unit}" for v, u in zip(values, units, strict=True))


def plan_markdown(attempts: list[Attempt], problem: DoseProblem, time_unit: str,
                  header: str) -> str:
    """The chosen (last) attempt as a plan-vs-constant table, then every attempt."""
    last = attempts[-1]
    plan, target = last.plan, problem.target_fraction
    segments = ", ".join(f"{a:g}–{b:g}" for a, b in zip(plan.boundaries[:-1],
                                                        plan.boundaries[1:], strict=True))
    lines = [
        f"# Dose plan: {header}", "",
        f"Keep **{problem.output} < {problem.threshold:g}** over "
        f"{problem.window[0]:g}–{problem.window[1]:g} {time_unit} in at least "
        f"{100 * target:.1f} % of virtual cells, with least cumulative dose. "
        f"Segments ({time_unit}): {segments}.", "",
        "| schedule | segment doses | cumulative dose | predicted fraction (surrogate) | "
        "verified fraction (simulator) | meets target |",
        "|---|---|---|---|---|---|",
    ]
    rows = (("plan", plan.doses, plan.cumulative_dose, plan.predicted_fraction,
             last.plan_verified),
            ("constant", plan.constant_segment_doses, plan.constant_cumulative_dose,
             plan.constant_predicted_fraction, last.constant_verified))
    for name, doses, cumulative, predicted, verified in rows:
        lines.append(f"| {name} | {_doses(doses, plan.units)} | "
                     f"{_cumulative(cumulative, plan.units, time_unit)} | "
                     f"{100 * predicted:.1f} % | {100 * verified.fraction:.1f} % "
                     f"({verified.cells - verified.failed} cells) | "
                     f"{'yes' if meets(verified.fraction, target) else 'no'} |")
    lines += ["", *_verdict(last, target, len(attempts)), "", "## Attempts", "",
              "Each attempt plans on the surrogate; when the verified fraction falls short, the "
              "next plans with a higher per-cell quantile and a higher required fraction.", "",
              "| attempt | per-cell quantile | required on surrogate | plan verified | "
              "constant verified |", "|---|---|---|---|---|"]
    for i, attempt in enumerate(attempts):
        lines.append(f"| {i + 1} | {100 * (1 - attempt.problem.margin_risk):.2f} % | "
                     f"{100 * attempt.problem.target_fraction:.2f} % | "
                     f"{100 * attempt.plan_verified.fraction:.1f} % | "
                     f"{100 * attempt.constant_verified.fraction:.1f} % |")
    return "\n".join(lines) + "\n"


def _verdict(last: Attempt, target: float, attempts: int) -> list[str]:
    plan = last.plan
    lines = []
    if not plan.feasible:
        lines.append("**No schedule met the constraint on the surrogate**: the plan shown is "
                     "the one that came closest.")
    if last.meets(target):
        saving = 1.0 - plan.cumulative_dose.sum() / max(plan.constant_cumulative_dose.sum(),
                                                        1e-300)
        lines.append(f"Both schedules meet the target in the simulator; the plan uses "
                     f"{100 * saving:.1f} % less cumulative dose than the constant schedule.")
    else:
        short = [name for name, check in (("the plan", last.plan_verified),
                                          ("the constant schedule", last.constant_verified))
                 if not meets(check.fraction, target)]
        lines.append(f"**After {attempts} attempt(s), {' and '.join(short)} still fall(s) "
                     f"short of the target in the simulator**; do not use it as is.")
    return lines


def plan_figure(attempt: Attempt, problem: DoseProblem, times: np.ndarray,
                time_unit: str) -> bytes:
    """PNG: the dose schedules (top) and the verified output's 5–95 % band (bottom)."""
    from matplotlib.figure import Figure

    plan = attempt.plan
    figure = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    schedules = (("plan", plan.doses, attempt.plan_verified, "C0"),
                 ("constant", plan.constant_segment_doses, attempt.constant_verified, "C1"))
    for name, doses, verified, color in schedules:
        for a, control in enumerate(plan.controls):
            steps = np.append(doses[:, a], doses[-1, a])
            top.step(plan.boundaries, steps, where="post", color=color,
                     ls="-" if a == 0 else "--", label=f"{name}: {control}")
        q05, q50, q95 = verified.band
        bottom.fill_between(times, q05, q95, color=color, alpha=0.25,
                            label=f"{name}: 5–95 % of cells")
        bottom.plot(times, q50, color=color, lw=1.2, label=f"{name}: median")
    top.set_ylabel(f"dose ({', '.join(plan.units)})")
    top.legend(fontsize=8)
    for axis in (top, bottom):
        axis.axvspan(*problem.window, color="grey", alpha=0.1)
    bottom.axhline(problem.threshold, color="red", ls=":", label="threshold")
    bottom.set_ylabel(problem.output)
    bottom.set_xlabel(f"time ({time_unit})")
    bottom.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()

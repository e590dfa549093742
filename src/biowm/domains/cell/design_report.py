"""Tables and plots of a closed-loop experiment-design comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biowm.core.io import atomic_path

TARGET_FRACTION = 0.6  # issue 6: reach random's final error with at most 60 % of its runs


def design_table(results: dict[str, Any]) -> str:
    """Markdown: per seed and strategy, the experiments needed to reach random's final
    error, and the verdict against the target fraction."""
    rows = [f"### Closed-loop design of doubles ({results['doubles']} candidates, "
            f"{results['rounds']} rounds × {results['batch']})", "",
            "| seed | random: final error (runs) | strategy | its error at the end | "
            "runs to reach random's final error | fraction of random's |",
            "|---|---|---|---|---|---|"]
    for seed in results["seeds"]:
        for name in results["strategies"]:
            needed = seed["experiments_needed"][name]
            fraction = seed["fraction_of_random"][name]
            rows.append(
                f"| {seed['seed']} | {seed['random_final_error']:.3f} "
                f"({seed['random_experiments']}) | {name} | "
                f"{seed['curves'][name]['error'][-1]:.3f} | "
                f"{'not reached' if needed is None else needed} | "
                f"{'–' if fraction is None else f'{fraction:.0%}'} |")
    rows.append("")
    for name, worst in results["worst_fraction"].items():
        verdict = "not reached on every seed" if worst is None else (
            f"worst seed {worst:.0%} of random's experiments — "
            f"{'met' if worst <= TARGET_FRACTION else 'not met'} "
            f"(target ≤ {TARGET_FRACTION:.0%})")
        rows.append(f"- {name}: {verdict}")
    return "\n".join(rows) + "\n"


def plot_design_curves(results: dict[str, Any], path: Path) -> None:
    """Error on all doubles against experiments run, one panel per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    figure, axes = plt.subplots(1, len(seeds), figsize=(4.2 * len(seeds), 3.6),
                                sharey=True, squeeze=False)
    for axis, seed in zip(axes[0], seeds, strict=True):
        for index, (name, curve) in enumerate(seed["curves"].items()):
            axis.plot(curve["experiments"], curve["error"], "o-", ms=3, color=f"C{index}",
                      label=name)
        axis.axhline(seed["random_final_error"], color="grey", lw=0.8, ls=":")
        axis.set_title(f"seed {seed['seed']}")
        axis.set_xlabel("double perturbations run")
    axes[0][0].set_ylabel("mean L2 error on all doubles")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)

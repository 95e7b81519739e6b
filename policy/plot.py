"""Training curves of one or more GRPO runs: `python -m policy.plot RUN_DIR [RUN_DIR ...]`.

Draws the mean reward, the perception accuracy (exact, and the share of characters right) and
the valid-move rate against the step, from each run's `train_metrics.jsonl`: thin lines for
the sampled training batches (temperature 1), markers for the greedy held-out evaluations.
Writes `RUN_DIR/curves.png` (the first run's folder) or `--out FILE`.
"""

from __future__ import annotations

import argparse
import os
import sys

from policy import loop

PANELS = (  # (title, training metric, held-out metric)
    ("mean reward (sampled)", "reward", None),
    ("perception exact-match", "perception_reward", "perception_exact"),
    ("perception share of characters", "perception_share", "perception_share"),
    ("valid-move rate", "valid_move_rate", "valid_move_rate"),
)


def series(lines: list[dict], kind: str, name: str) -> tuple[list[int], list[float]]:
    rows = [line for line in lines if line.get("kind") == kind and name in line]
    return [row["step"] for row in rows], [row[name] for row in rows]


def plot_runs(runs: dict[str, list[dict]], out: str, title: str | None = None) -> str:
    """Draw the curves of `runs` (label -> metric lines) into the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (panel, train_name, eval_name) in zip(axes, PANELS):
        for i, (label, lines) in enumerate(runs.items()):
            colour = f"C{i}"
            steps, values = series(lines, "train", train_name)
            ax.plot(steps, values, color=colour, alpha=0.45, lw=1, label=f"{label} (train)")
            if eval_name:
                steps, values = series(lines, "eval", eval_name)
                ax.plot(steps, values, "o-", color=colour, ms=4, label=f"{label} (held-out)")
        ax.set_title(panel)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (policy.train --checkpoint-dir)")
    parser.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    runs = {}
    for run in args.runs:
        if not os.path.exists(os.path.join(run, "train_metrics.jsonl")):
            print(f"error: {run} has no train_metrics.jsonl (not a policy.train run folder?)",
                  file=sys.stderr)
            return 2
        runs[os.path.basename(os.path.normpath(run))] = loop.read_metrics(run)
    out = plot_runs(runs, args.out or os.path.join(args.runs[0], "curves.png"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

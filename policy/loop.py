"""The run loop both jobs share, the cold start (`policy.sft`) and GRPO (`policy.train`):
steps with a progress bar, held-out evaluations and checkpoints at their cadence, a stop on a
non-finite loss, and a checkpoint on Ctrl-C (or SIGTERM) before it stops. What a step does is
the job's; the loop never looks inside its state.

    state, completed, evaluation = run(state, start, steps, step_fn, evaluate_fn, save_fn, ...)

A run's log is JSON lines (one per step, kind "train", and one per evaluation, kind "eval")
plus TensorBoard events under `tb/`; `read_metrics(run_dir, name)` reads the lines back.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

from tqdm.auto import tqdm


class Log:
    """JSON lines (`name` in `run_dir`) and TensorBoard events (`tb/`) of a run. On resume,
    lines past the checkpoint's step are dropped, so the log reads like an unbroken run."""

    def __init__(self, run_dir: str, start: int, name: str):
        self.path = os.path.join(run_dir, name)
        if os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if json.loads(line)["step"] <= start]
            with open(self.path, "w") as f:
                f.writelines(kept)
        try:
            from tensorboardX import SummaryWriter
            self.board = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=start + 1)
        except ImportError:  # pragma: no cover - tensorboardX is a dependency
            self.board = None

    def write(self, step: int, metrics: dict, kind: str = "train") -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(dict(step=step, kind=kind, **metrics)) + "\n")
        if self.board is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.board.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def read_metrics(run_dir: str, name: str = "train_metrics.jsonl") -> list[dict]:
    """The lines of a run's log."""
    with open(os.path.join(run_dir, name)) as f:
        return [json.loads(line) for line in f]


def run(state: Any, start: int, steps: int, step_fn: Callable[[Any, int], tuple[Any, dict]],
        evaluate_fn: Callable[[Any], dict] | None, save_fn: Callable[[Any, int], None],
        log: Log, eval_every: int, save_every: int, where: str, desc: str,
        quiet: bool = False, stop_after: int | None = None,
        postfix: Callable[[dict], dict] = lambda m: dict(loss=f"{m['loss']:.3f}"),
        evaluate_first: bool = False) -> tuple[Any, int, dict]:
    """Steps `start` .. `steps - 1`; returns (state, steps completed, the last evaluation's
    metrics).

    step_fn(state, step) -> (state, metrics): one step; metrics hold "loss" (checked before
        the new state is kept: a non-finite loss raises FloatingPointError and leaves the last
        checkpoint as it is).
    evaluate_fn(state) -> metrics: held-out metrics, every `eval_every` steps and at the end
        (None: never); `evaluate_first`: also before the first step of a fresh run.
    save_fn(state, step): a checkpoint, every `save_every` steps, at the end, at `stop_after`
        (a stop as if interrupted) and on KeyboardInterrupt (then re-raised).
    """
    evaluation: dict = {}

    def evaluate(step):
        nonlocal evaluation
        evaluation = evaluate_fn(state)
        log.write(step, evaluation, "eval")
        if not quiet:
            bar.write(f"step {step}: " + " ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in evaluation.items()))

    bar = tqdm(range(start, steps), initial=start, total=steps, disable=quiet, desc=desc,
               unit="step")
    completed, saved = start, start
    try:
        if evaluate_first and start == 0 and evaluate_fn is not None:
            evaluate(0)
        for step in bar:
            new_state, metrics = step_fn(state, step)
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(
                    f"the loss became {metrics['loss']} at step {step + 1}; stopping. The last "
                    f"good checkpoint (step {saved}) is in {where}")
            state, completed = new_state, step + 1
            log.write(completed, metrics)
            bar.set_postfix(postfix(metrics))
            if evaluate_fn is not None and (completed % eval_every == 0 or completed == steps):
                evaluate(completed)
            if completed % save_every == 0 or completed == steps or completed == stop_after:
                save_fn(state, completed)
                saved = completed
            if completed == stop_after:
                break
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: saving step {completed} to {where}")
        save_fn(state, completed)
        raise
    finally:
        bar.close()
        log.close()
    return state, completed, evaluation

"""Throughput of one GRPO training step: `python -m bench.train`.

Times `policy.train`'s step exactly as a run takes it (deal fresh boards, render them, sample
`--samples` responses per board, score them on the device, one micro-batched GRPO update against
a frozen reference) with a randomly initialised VLM of size `--size` on `--game` boards. A random
model rarely ends its turn, so nearly every response runs to the response budget: the figures
are for full-length responses, the slowest case. One warm-up step (the compile, reported apart),
then `--steps` timed steps; the median is reported.

    python -m bench.train                                   # tiny model, 16 boards x 5 samples
    python -m bench.train --batch 256 --size small --json train.json
    python -m bench.train --model Qwen2.5-VL-3B-Instruct --dtype bfloat16 --batch 64   # a GPU

boards/s = boards per step / seconds per step; tokens/s = sampled response tokens per second of
the rollout phase; the update phase scores every response under the policy and the reference
and takes one optimiser step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
from flax import nnx

import jaxgym
from bench import write_json
from bench.decode import cpu_busy, machine
from policy import (episodes, model as vlm, pretrained_model, sharding, tokenizer as tokenization,
                    train)
from policy.config import build


def run(game: str, board_preset: str, size: str, batch: int, samples: int, steps: int,
        microbatch: int, kl_coef: float = 1e-2, updates: int = 1, model: str | None = None,
        dtype: str = "float32", fsdp: int = 1, remat: bool = False) -> dict:
    games = episodes.GameSet.make(game, board_preset)
    if model:  # a downloaded checkpoint, its prompt as policy.train --model writes it
        games = episodes.GameSet.make(game, board_preset, "full", True)
        games = pretrained_model.fit(games, model)
        graphdef, params, tok, model_cfg = pretrained_model.load_policy(model, dtype)
        size = model
    else:
        tok = tokenization.default()
        model_cfg = vlm.config(size, vocab_size=tok.vocab_size)
        graphdef, params = nnx.split(vlm.create(model_cfg, tok.image_pad_id, seed=0))
    budget = games.response_budget(tok)
    cfg = build(train.TrainConfig, game=game, board_preset=board_preset, batch=batch, samples=samples,
                            microbatch=microbatch, kl_coef=kl_coef, updates=updates)
    mesh = sharding.make_mesh(fsdp)
    graphdef = vlm.with_remat(graphdef, params, remat)
    trainer = train.Trainer(cfg, games, graphdef, tok, model_cfg, budget, mesh)
    params = trainer.place(params)
    opt_state = trainer.place(trainer.tx.init(params))
    ref = params
    start = time.perf_counter()
    params, opt_state, _ = trainer.step(params, opt_state, ref, jax.random.key(0))
    first = time.perf_counter() - start
    print(f"  warm-up (compile + one step): {first:.1f} s", flush=True)
    rows = []
    for i in range(steps):
        params, opt_state, metrics = trainer.step(params, opt_state, ref, jax.random.key(i + 1))
        rows.append(metrics)
        print(f"  step {i + 1}/{steps}: {metrics['rollout_s'] + metrics['update_s']:.2f} s",
              flush=True)

    def median(name):
        return statistics.median(row[name] for row in rows)

    return dict(game=game, board_preset=board_preset, size=size, batch=batch, samples=samples,
                microbatch=trainer.grpo_cfg.microbatch, devices=mesh.size, fsdp=fsdp,
                remat=remat, kl_coef=kl_coef,
                updates=updates,
                response_budget=budget, params=vlm.num_params(nnx.merge(graphdef, params)),
                boards_per_s=median("boards_per_s"), tokens_per_s=median("tokens_per_s"),
                rollout_s=median("rollout_s"), update_s=median("update_s"),
                response_length=median("response_length"), first_step_s=first,
                peak_bytes=peak_bytes())


def peak_bytes() -> int | None:
    """The device's peak memory in use so far (None where the backend does not say: CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()) + ["mix"])
    parser.add_argument("--board-preset", default="easy")
    parser.add_argument("--size", default="tiny", choices=sorted(vlm.CONFIGS))
    parser.add_argument("--model", default=None,
                        help="a downloaded Qwen2-VL / Qwen2.5-VL folder instead of --size")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="that checkpoint's parameters")
    parser.add_argument("--batch", type=int, default=16, help="boards per step")
    parser.add_argument("--samples", type=int, default=5, help="responses per board")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--microbatch", type=int, default=0, help="0: automatic")
    parser.add_argument("--kl-coef", type=float, default=1e-2,
                        help="KL weight (0: the reference is never scored)")
    parser.add_argument("--updates", type=int, default=1, help="GRPO updates per sampled batch")
    parser.add_argument("--fsdp", type=int, default=1,
                        help="split parameters over this many devices (policy.train --fsdp)")
    parser.add_argument("--remat", action="store_true",
                        help="recompute decoder activations in the backward pass")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps) < 1 or args.samples < 2:
        parser.error("--batch and --steps must be >= 1, --samples >= 2")
    if args.fsdp < 1 or jax.device_count() % args.fsdp:
        parser.error(f"--fsdp {args.fsdp} must divide the {jax.device_count()} device(s)")
    info = machine()
    busy = cpu_busy()
    print(f"machine: {info['arch']}, {info['device']}, {info['cpu_count']} CPUs, jax {info['jax']}"
          + (f"; other load {busy:.0%}" if busy and busy > 0.1 else ""), flush=True)
    result = run(args.game, args.board_preset, args.size, args.batch, args.samples, args.steps,
                 args.microbatch, args.kl_coef, args.updates, args.model, args.dtype,
                 args.fsdp, args.remat)
    result["machine"], result["cpu_busy_before"] = info, busy
    print(f"{args.game} ({args.board_preset}), {args.size} model ({result['params']:,} params), "
          f"{args.batch} boards x {args.samples} samples, {result['devices']} device(s), "
          f"update slices of {result['microbatch']}:\n"
          f"  {result['boards_per_s']:.2f} boards/s, {result['tokens_per_s']:,.0f} sampled "
          f"tokens/s; rollout {result['rollout_s']:.2f} s + update {result['update_s']:.2f} s "
          f"per step (median of {args.steps}; responses {result['response_length']:.0f} tokens)"
          + (f"; peak device memory {result['peak_bytes'] / 2**30:.2f} GiB"
             if result["peak_bytes"] else ""))
    return write_json(args.json, result)


if __name__ == "__main__":
    main()

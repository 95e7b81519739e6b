"""Decode throughput of the policy's sampler next to Hugging Face: `python -m bench.decode`.

Measures generated tokens/s of `policy.sample.generate` (one jitted call: the ViT over each
frame, the game's instructions encoded once for the batch, one prefill over each board's image
tokens, then `--new-tokens` key/value-cached decode steps under `lax.scan`) on `--batch` real Swap (easy) boards and their real prompts, with a
randomly initialised VLM of size `--size`. Side by side, in the same run: Hugging Face
transformers' `Qwen2ForCausalLM.generate` (PyTorch, CPU, float32, random weights) on a decoder of
exactly the same shape (vocabulary, width, depth, heads, key/value heads, MLP width, rotary
theta, norm epsilon, tied embeddings), fed random prompt ids of the same length. (Where our
config has learned absolute positions, ours adds that one table lookup per token; Qwen2 has none.)

Both sides sample at temperature 1 with no top-k / top-p filtering and produce exactly
batch x new-tokens tokens (HF: `min_new_tokens` = `max_new_tokens`; ours: no end-of-turn stop),
so tokens/s = batch * new_tokens / seconds per call. Both times include the prefill; ours also
includes the vision tower, HF's has none. HF's `generate` runs the whole prompt for every
sequence; ours shares the instructions across the batch (prefix sharing is part of what is
measured). Each side gets one warm-up call (ours: the compile, reported apart), then the two
sides take turns for `--repeats` timed calls each (so a shared VM whose speed drifts slows both
alike), and each side's best (fastest) call is reported. Both use every CPU thread they take by
default, so run it on an otherwise idle machine: PyTorch's OpenMP threads slow down many times
over when other processes share the cores (the report says when it saw other load just before
the runs).

    python -m bench.decode                                   # tiny, batch 64, 96 new tokens
    python -m bench.decode --size small --batch 16 --new-tokens 32
    python -m bench.decode --no-hf --json decode.json        # ours only, results to a file

The ratio column is tokens/s over HF's tokens/s: 3.0 means our sampler produces three times as
many tokens per second as `transformers` on the same decoder. The HF side needs PyTorch
(`pip install torch --index-url https://download.pytorch.org/whl/cpu`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

import jaxgym
import render
from bench import write_json
from jaxgym import text
from policy import model as vlm
from policy import sample, tokenizer

TORCH_HINT = ("pip install torch --index-url https://download.pytorch.org/whl/cpu  (PyTorch's "
              "CPU build; pip install -e '.[bench]' also installs torch)")


# ---- small helpers ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    device = jax.devices()[0]
    return {
        "arch": platform.machine(),
        "device": f"{device.platform}:{device.device_kind}",
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
    }


def _cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) CPU ticks since boot from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `seconds` (this process is idle meanwhile, so
    it is other processes' work); None where it cannot be read."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    return 1.0 - (after[0] - before[0]) / (after[1] - before[1])


def busy_note(busy: float | None) -> str | None:
    """A warning when other processes already load the CPUs: PyTorch's OpenMP threads slow down
    many times over when they must share cores (XLA's thread pool much less), so the ratio
    would say more about the neighbours than about the samplers."""
    if busy is None or busy < 0.2:
        return None
    return (f"note: other processes kept the CPUs {busy:.0%} busy just before this run; the "
            "times, HF's most, may be far off: rerun on an idle machine")


PAUSE_S = 1.0


def time_interleaved(calls: dict[str, Callable[[int], Any]],
                     repeats: int) -> dict[str, tuple[float, list[float], Any]]:
    """For each side: (seconds of its warm-up call, seconds of each of `repeats` later calls, its
    last result). After the warm-ups the sides take turns call by call, so a machine whose speed
    drifts (a shared VM) slows both alike. `call(i)` must block until its result is ready."""
    results: dict[str, list] = {}
    for name, call in calls.items():
        start = time.perf_counter()
        out = call(0)
        results[name] = [time.perf_counter() - start, [], out]
        print(f"    {name} warm-up: {results[name][0]:.3f} s", flush=True)
    for i in range(repeats):
        for name, call in calls.items():
            time.sleep(PAUSE_S)  # the other side's spinning worker threads go idle first
            start = time.perf_counter()
            results[name][2] = call(i + 1)
            results[name][1].append(time.perf_counter() - start)
            print(f"    {name} call {i + 1}/{repeats}: {results[name][1][-1]:.3f} s", flush=True)
    return {name: tuple(r) for name, r in results.items()}


def summary(first: float, times: list[float], tokens: int) -> dict:
    best = min(times)
    return {"tokens_per_s": tokens / best, "s_per_call": best, "median_s": statistics.median(times),
            "first_call_s": first, "times_s": times}


# ---- inputs ----------------------------------------------------------------------------------


def swap_inputs(cfg: vlm.ModelConfig, tok: tokenizer.GameTokenizer,
                batch: int) -> tuple[jax.Array, list[int], list[int]]:
    """(frames uint8[batch, H, W, 3], instruction ids, image-part ids) of `batch` fresh Swap
    (easy) boards."""
    env = jaxgym.make("swap", "easy")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), batch))
    frames = jax.vmap(lambda s: render.frame(env, s))(states)
    prefix, rest = tok.prompt_parts(text.prompt(env), cfg.num_image_tokens(frames.shape[1:]))
    return frames, prefix, rest


def fit_length(prefix: list[int], rest: list[int], length: int) -> list[int]:
    """The instructions `prefix` cut or repeated cyclically so that with the image part `rest`
    the prompt is `length` tokens long."""
    if length <= len(rest):
        raise ValueError(f"--prompt-len must be more than {len(rest)} (the image part)")
    return [prefix[i % len(prefix)] for i in range(length - len(rest))]


# ---- our sampler -----------------------------------------------------------------------------


def prepare_ours(cfg: vlm.ModelConfig, tok: tokenizer.GameTokenizer, frames: jax.Array,
                 prefix: list[int], rest: list[int], new_tokens: int):
    """(call(i) -> Samples, decoder parameters) for our sampler on these inputs."""
    batch = frames.shape[0]
    model = vlm.create(cfg, tok.image_pad_id, seed=0)
    graphdef, params = nnx.split(model)
    tokens = jnp.tile(jnp.asarray(rest, jnp.int32), (batch, 1))
    prompt = sample.Prompt(jnp.asarray(prefix, jnp.int32)[None], jnp.ones((1, len(prefix)), bool),
                           tokens, jnp.ones(tokens.shape, bool), jnp.zeros((batch,), jnp.int32))

    def call(i: int):
        # eos_id=-1: no sequence stops, so every one of the batch * new_tokens tokens is a sample
        # (the loop runs all steps either way: shapes are fixed).
        out = sample.generate(graphdef, params, prompt, frames, jax.random.key(i), 1.0, 1.0,
                              max_new_tokens=new_tokens, top_k=0, eos_id=-1, pad_id=tok.pad_id)
        out = jax.block_until_ready(out)
        assert out.tokens.shape == (batch, new_tokens) and bool(out.mask.all()), "not B x N"
        return out

    return call, decoder_params(model)


def decoder_params(model: vlm.VLM) -> int:
    """Parameters of the decoder as Qwen2 has them: no vision tower, no learned positions."""
    count = vlm.num_params(model.model)
    if hasattr(model.model, "embed_positions"):
        count -= vlm.num_params(model.model.embed_positions)
    return count + (0 if model.cfg.tie_embeddings else vlm.num_params(model.lm_head))


# ---- Hugging Face ----------------------------------------------------------------------------


def hf_model(cfg: vlm.ModelConfig, seed: int):
    """`Qwen2ForCausalLM` (float32, eval mode, random weights) with cfg's decoder shape."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    hf_cfg = Qwen2Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        intermediate_size=cfg.mlp_width, rope_theta=cfg.rope_theta, rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings)
    return Qwen2ForCausalLM(hf_cfg).to(torch.float32).eval()


def prepare_hf(cfg: vlm.ModelConfig, batch: int, prompt_len: int, new_tokens: int,
               pad_id: int):
    """(call(i) -> ids, decoder parameters, torch threads) for HF's `generate`, or None (with a
    message) when PyTorch cannot be imported."""
    try:
        import torch
        model = hf_model(cfg, seed=0)
    except ImportError as error:  # no torch, or a transformers that cannot use it
        print(f"  HF transformers (PyTorch) skipped: {error}\n  To include it: {TORCH_HINT}")
        return None
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt_len), generator=generator)
    attention = torch.ones_like(ids)

    def call(i: int):
        torch.manual_seed(100 + i)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=attention, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                use_cache=True, pad_token_id=pad_id)
        assert out.shape == (batch, prompt_len + new_tokens), out.shape
        return out

    return call, sum(p.numel() for p in model.parameters()), torch.get_num_threads()


# ---- report ----------------------------------------------------------------------------------


def table(rows: list[tuple[str, dict]], hf: dict | None) -> str:
    header = f"{'':44} {'tokens/s':>10} {'s/call':>8} {'x HF':>6}"
    lines = [header, "-" * len(header)]
    for name, r in rows:
        ratio = f"{r['tokens_per_s'] / hf['tokens_per_s']:6.2f}" if hf else f"{'-':>6}"
        lines.append(f"{name:44} {r['tokens_per_s']:>10,.0f} {r['s_per_call']:>8.3f} {ratio}")
    return "\n".join(lines)


def report(results: dict, cfg: vlm.ModelConfig, frame_shape: tuple[int, ...]) -> str:
    ours, hf = results["ours"], results["hf"]
    rows = [(f"jaxgym generate (ViT + decoder, {cfg.dtype})", ours)]
    if hf:
        rows.append(("HF Qwen2ForCausalLM.generate (torch fp32)", hf))
    lines = ["", table(rows, hf),
             f"best of {results['repeats']} timed calls; each call includes the prefill over the "
             f"{results['prompt_len']}-token prompt (HF's too), ours also the ViT over the "
             f"{frame_shape[0]}x{frame_shape[1]} frame. Our compile: {ours['compile_s']:.1f} s "
             "(first call - best call)."]
    if hf:
        lines.append(f"decoder parameters: ours {ours['decoder_params']:,}, "
                     f"HF {hf['decoder_params']:,}")
    if getattr(cfg, "learned_positions", 0):
        lines.append(f"ours also adds learned absolute positions ({cfg.learned_positions} x "
                     f"{cfg.width}, one lookup per token), which Qwen2 has not.")
    busy = [b for b in results["cpu_busy_before"].values() if b is not None]
    note = busy_note(max(busy, default=None))
    return "\n".join(lines + ([note] if note else []))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.decode",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=sorted(vlm.CONFIGS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=None,
                        help="prompt tokens, image block included (default: the Swap easy prompt's)")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per side (best kept)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="our compute dtype (default: the size's; HF is always float32)")
    parser.add_argument("--no-hf", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if min(args.batch, args.new_tokens, args.repeats) < 1:
        parser.error("--batch, --new-tokens and --repeats must be >= 1")
    if args.prompt_len is not None and args.prompt_len < 1:
        parser.error("--prompt-len must be >= 1")
    args.error = parser.error
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = vlm.config(args.size, **({"dtype": args.dtype} if args.dtype else {}))
    tok = tokenizer.default()
    frames, prefix, rest = swap_inputs(cfg, tok, args.batch)
    if args.prompt_len is not None:
        try:
            prefix = fit_length(prefix, rest, args.prompt_len)
        except ValueError as error:
            args.error(str(error))
    prompt_len, tokens = len(prefix) + len(rest), args.batch * args.new_tokens

    info = machine()
    print(f"machine: {info['arch']}, {info['device']}, {info['cpu_count']} CPUs; jax {info['jax']}, "
          f"torch {info['torch']}, transformers {info['transformers']}")
    print(f"model {args.size} (decoder width {cfg.width}, depth {cfg.depth}, heads {cfg.heads}/"
          f"{cfg.kv_heads}, mlp {cfg.mlp_width}, vocab {cfg.vocab_size}; ours {cfg.dtype}), "
          f"batch {args.batch}, prompt {prompt_len} tokens ({len(rest) - 4} image), "
          f"{args.new_tokens} new tokens = {tokens:,} tokens per call", flush=True)

    busy = {"ours": cpu_busy()}  # other processes' load, measured while we wait, before the runs
    calls = {"ours": None, "HF": None}
    calls["ours"], our_params = prepare_ours(cfg, tok, frames, prefix, rest, args.new_tokens)
    hf_side = None if args.no_hf else prepare_hf(cfg, args.batch, prompt_len, args.new_tokens,
                                                 tok.pad_id)
    if hf_side is None:
        del calls["HF"]
    else:
        calls["HF"] = hf_side[0]
        print(f"  HF uses {hf_side[2]} torch threads", flush=True)
    print(f"  a warm-up call each (ours: the compile), then {args.repeats} timed calls each, "
          "taking turns", flush=True)
    timed = time_interleaved(calls, args.repeats)
    first, times, _ = timed["ours"]
    ours = summary(first, times, tokens)
    ours["compile_s"] = max(first - ours["s_per_call"], 0.0)
    ours["decoder_params"] = our_params
    hf = None
    if hf_side is not None:
        first, times, _ = timed["HF"]
        hf = summary(first, times, tokens)
        hf["decoder_params"], hf["torch_threads"] = hf_side[1], hf_side[2]

    results = {"machine": info, "size": args.size, "dtype": cfg.dtype, "batch": args.batch,
               "prompt_len": prompt_len, "new_tokens": args.new_tokens, "repeats": args.repeats,
               "statistic": "best", "cpu_busy_before": busy, "ours": ours, "hf": hf,
               "ratio_to_hf": ours["tokens_per_s"] / hf["tokens_per_s"] if hf else None}
    print(report(results, cfg, frames.shape[1:]))
    return write_json(args.json, results)


if __name__ == "__main__":
    main()

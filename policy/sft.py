"""The supervised cold start (G1) and the format-only base model (G0's starting point).

    python -m policy.sft --game swap --preset cpu --out runs/sft-swap        # G1 cold start
    python -m policy.sft --game swap --preset cpu --variant base --out runs/base-swap

Targets are made on the fly from the engine for boards it deals (fresh, plus boards advanced by
random legal moves): `cold` = ground-truth perception, a one-line rationale and the expert's
answer; `base` = empty perception and reasoning and a uniformly random answer (format only).
Cross-entropy on the response tokens only; AdamW with linear warm-up and cosine decay; one
jitted step. Every `eval_every` steps the policy answers held-out boards greedily and the
perception exact-match, valid-move and format rates are printed and logged to
`OUT/sft_metrics.jsonl` (with the loss of every step; TensorBoard events in `OUT/tb/`). The
loop is `policy.loop`'s, the held-out evaluation `policy.evaluation`'s. Checkpoints (orbax) go to OUT; `--resume` continues a run exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxgym
from jaxgym import text as game_text
from policy import (checkpoint, config, episodes, evaluation, loop, model as vlm,
                    pretrained_model, sample, sharding)
from policy.config import OptimConfig, knob, nested
from policy import tokenizer as tokenization

LOG = "sft_metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    game: str = knob("swap", "a game, or mix: every game in each batch")
    board_preset: str | None = knob("easy", "the game's difficulty preset")
    model: str = knob("tiny", "a named size of policy.model (trained from scratch), or a "
                              "downloaded Qwen2-VL / Qwen2.5-VL folder to start from")
    model_overrides: dict = knob(default_factory=dict, help="ModelConfig fields, e.g. {'depth': 2}")
    dtype: str = knob("float32", "a checkpoint's parameters: float32 or bfloat16 (half the "
                                 "memory; the compute dtype follows)")
    variant: str = knob("cold", "cold (G1's cold start) or base (format only, G0's start)")
    prompt_style: str = knob("full", "the game's instructions: full, or brief (first sentence)")
    image_first: bool = knob(False, "show the image before the instructions")
    restate_board: bool = knob(False, "the think first restates the board, one token a cell "
                                      "(episodes.restated_board)")
    steps: int = knob(500, "optimiser steps")
    batch: int = knob(32, "boards per step")
    optim: OptimConfig = knob(
        default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=25, schedule="cosine",
                                            weight_decay=0.01),
        help="the optimiser: warm-up, then cosine decay")
    decision_weight: float = knob(1.0, "weight of the <think> and <answer> tokens in the loss, "
                                       "relative to the perception tokens")
    move_weight: float = knob(1.0, "weight of the move in the <think> (its first numbers, as "
                                   "many as the answer has) against the other tokens")
    think_batch: int = knob(0, "more boards per step, trained on their think alone: from "
                               "<think> through the move, without the image, instructions and "
                               "perception before it, at the positions it holds in the whole "
                               "response (needs restate_board)")
    think_from: str = knob("think", "where the think-only rows start: think (the restated "
                                    "board given, read from the image) or perception (the "
                                    "perception block given, the restated board copied from "
                                    "it, so that the move depends on what perception read)")
    max_random_moves: int = knob(3, "boards are advanced by up to this many random moves")
    eval_every: int = knob(100, "steps between held-out evaluations")
    eval_boards: int = knob(64, "held-out boards per evaluation")
    save_every: int = knob(200, "steps between checkpoints")
    fsdp: int = knob(1, "split parameters and optimiser state over this many devices (FSDP); "
                        "1: a copy on each device")
    remat: bool = knob(False, "recompute decoder activations in the backward pass (less memory)")
    seed: int = knob(0, "the seed of boards, initial weights and samples")

    def __post_init__(self) -> None:
        nested(self)
        if self.model not in vlm.CONFIGS and not os.path.isdir(self.model):
            raise ValueError(f"model must be one of {sorted(vlm.CONFIGS)} or a checkpoint "
                             f"folder; {self.model!r} is neither")
        if self.pretrained and (self.think_batch or self.move_weight != 1
                                or self.decision_weight != 1):
            raise ValueError("think_batch, move_weight and decision_weight train the "
                             "from-scratch model's tag tokens; a checkpoint's tokenizer has "
                             "none (leave them at 0, 1 and 1)")
        if self.pretrained and self.game == "mix":
            raise ValueError("a checkpoint trains one game at a time (its frames are sized "
                             "to fit it)")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.variant not in ("cold", "base"):
            raise ValueError(f"variant must be 'cold' or 'base', got {self.variant!r}")
        if self.steps < 1 or self.batch < 1 or self.eval_boards < 1:
            raise ValueError("steps, batch and eval_boards must be positive")
        if self.decision_weight <= 0 or self.move_weight <= 0:
            raise ValueError("decision_weight and move_weight must be positive")
        if self.think_batch < 0:
            raise ValueError("think_batch must be >= 0")
        if self.fsdp < 1:
            raise ValueError("fsdp must be >= 1")
        if self.think_batch and self.variant != "cold":
            raise ValueError("think_batch trains the cold start's move: variant must be cold")
        if self.think_batch and not self.restate_board:
            raise ValueError("think_batch trains the move from the think's restated board: "
                             "it needs restate_board")
        if self.prompt_style not in game_text.PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {game_text.PROMPT_STYLES}")
        if self.think_from not in THINK_FROM:
            raise ValueError(f"think_from must be one of {THINK_FROM}, got {self.think_from!r}")

    @property
    def pretrained(self) -> bool:
        """Whether `model` is a downloaded checkpoint folder."""
        return self.model not in vlm.CONFIGS


THINK_FROM = ("think", "perception")

RUN_PRESETS: dict[str, dict[str, Any]] = {
    # this 2-core CPU: the tiny model on easy boards, about 19 minutes; the move is learnt
    # from 96 more boards a step seen as their think alone (docs/learnability.md, section 8)
    "cpu": dict(model="tiny", board_preset="easy", steps=1500, batch=32, lr=1e-3,
                warmup_steps=75, prompt_style="brief", restate_board=True, move_weight=20.0,
                think_batch=96, eval_every=250),
    # one GPU: a larger model, larger batches
    "gpu": dict(model="small", board_preset="easy", steps=1500, batch=256, lr=5e-4,
                warmup_steps=75, prompt_style="brief", restate_board=True, move_weight=20.0,
                think_batch=768, eval_every=500, eval_boards=256, save_every=500),
}
"""Run sizes (`--preset`): flat settings of SFTConfig (`policy.config.build`)."""

PRETRAINED = dict(think_batch=0, move_weight=1.0, decision_weight=1.0, restate_board=False,
                  prompt_style="full", image_first=True, lr=1e-5)
"""What `--model DIR` (a checkpoint) changes in a preset made for the from-scratch model: no
tag-token weights, the full instructions after the image (as Qwen's chat examples have it),
a pretrained model's learning rate."""


# ---- the update ----------------------------------------------------------------------------


def optimizer(cfg: SFTConfig) -> optax.GradientTransformation:
    return config.optimizer(cfg.optim, cfg.steps)


def response_loss(model: nnx.Module, prompt: sample.Prompt, frames, response,
                  mask, think: ThinkRows | None = None) -> jax.Array:
    """Negative log-likelihood of the response tokens, averaged with weights `mask`
    (bool or float32[B, N]); with `think`, its tokens are averaged in alike."""
    logprobs = sample.token_logprobs(model, prompt, frames, response)
    total, weight = -jnp.sum(logprobs * mask), jnp.sum(mask)
    if think is not None:
        logits = model.text_logits(think.tokens, think.positions, think.valid)[:, :-1]
        logprobs = sample.chosen_logprobs(logits, think.tokens[:, 1:])
        total, weight = total - jnp.sum(logprobs * think.weights[:, 1:]), weight + jnp.sum(
            think.weights[:, 1:])
    return total / jnp.maximum(weight, 1)


class ThinkRows(NamedTuple):
    """Responses cut to their think (or perception and think), through the move
    (`think_rows`)."""

    tokens: jax.Array  # int32[A, W], right-padded
    positions: jax.Array  # int32[A, W]: each token's position in its whole sequence
    valid: jax.Array  # bool[A, W]
    weights: jax.Array  # float32[A, W]: each token's loss weight, 0 on what is given


def think_rows(tokenizer, response: np.ndarray, weights: np.ndarray,
               offsets: np.ndarray, think_from: str = "think") -> ThinkRows:
    """Each response from its `<think>` (`think_from="perception"`: from its `<perception>`)
    through the move it first names, kept at its positions (`offsets`: int32[A], the position
    of each response's first token). Its loss weights are those of the whole response after
    what the row is given, 0 before: after the restated board (which a think alone cannot
    predict), or after `</perception>` (the restated board is then copied from the perception
    block). response, weights: [A, N] as `targets` makes them."""
    is_think = response == tokenizer.tag_ids["<think>"]
    move = move_mask(tokenizer, response)
    if not (move.any(1) & is_think.any(1)).all():
        raise ValueError("think_rows needs a <think> that names the move in every response")
    end = response.shape[1] - np.argmax(move[:, ::-1], axis=1)  # one past the move
    if think_from == "perception":
        start = np.argmax(response == tokenizer.tag_ids["<perception>"], axis=1)
        board_end = np.argmax(response == tokenizer.tag_ids["</perception>"], axis=1) + 1
    else:
        start = np.argmax(is_think, axis=1)
        codes = np.isin(response, tokenizer.cell_code_ids)
        board_end = np.where(codes.any(1),
                             response.shape[1] - np.argmax(codes[:, ::-1], axis=1), 0)
    width = -(-int((end - start).max()) // 8) * 8
    columns = start[:, None] + np.arange(width)
    inside = columns < end[:, None]
    taken = np.minimum(columns, response.shape[1] - 1)
    rows = np.arange(response.shape[0])[:, None]
    tokens = np.where(inside, response[rows, taken], tokenizer.pad_id).astype(np.int32)
    kept = inside & (columns >= board_end[:, None])
    return ThinkRows(tokens, (offsets[:, None] + columns).astype(np.int32), inside,
                     np.where(kept, weights[rows, taken], 0.0).astype(np.float32))


@functools.lru_cache(maxsize=16)
def compiled_train_step(graphdef: nnx.GraphDef, optim: OptimConfig, steps: int):
    """`make_train_step` with the optimiser of `optim` over `steps`, built once per model
    structure and optimiser settings, so that runs alike (a resumed run, tests) share one
    compilation."""
    return make_train_step(graphdef, config.optimizer(optim, steps))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """train_step(params, opt_state, prompt, frames, response, mask)
    -> (params, opt_state, loss); jitted."""

    def loss_of(params, *batch):
        return response_loss(nnx.merge(graphdef, params), *batch)

    @jax.jit
    def train_step(params, opt_state, *batch):
        loss, grads = jax.value_and_grad(loss_of)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def place_batch(batch: tuple, mesh) -> tuple:
    """A step's arrays on the mesh: each board's rows (its prompt part, frame, response and
    think) split over every device, the instructions the boards share copied on each."""
    prompt, *rest = batch
    rows, copied = sharding.batch(mesh), sharding.copied(mesh)
    prompt = sample.Prompt(*jax.device_put(
        (prompt.prefix, prompt.prefix_valid), copied), *jax.device_put(
        (prompt.tokens, prompt.valid, prompt.group), rows))
    return (prompt, *jax.device_put(tuple(rest), rows))


# ---- the run -------------------------------------------------------------------------------


def targets(cfg: SFTConfig, games: episodes.GameSet, tokenizer, states, key, budget):
    """(int32[B, N] response ids, float32[B, N] loss weights: 0 on padding, `decision_weight`
    from `<think>` on, 1 before, times `move_weight` on the move). N is the batch's longest
    target rounded up to 8, at most `budget`: the sampling budget's slack would only add
    padding to every training sequence (a few shapes, each compiled once)."""
    texts = (games.cold_start_texts(states) if cfg.variant == "cold"
             else games.base_texts(key, cfg.batch))
    response, mask = episodes.pad_responses(tokenizer, texts, budget)
    width = -(-int(mask.sum(1).max()) // 8) * 8
    response, mask = response[:, :width], mask[:, :width]
    weights = decision_weights(tokenizer, response, mask, cfg.decision_weight)
    return response, weights * move_weights(tokenizer, response, cfg.move_weight)


def response_offsets(prompt: sample.Prompt) -> np.ndarray:
    """int32[B]: the position of each sequence's first response token (after its shared
    instructions and its own prompt tokens)."""
    shared = np.asarray(prompt.prefix_valid).sum(1)[np.asarray(prompt.group)]
    return (shared + np.asarray(prompt.valid).sum(1)).astype(np.int32)


def decision_weights(tokenizer, response: np.ndarray, mask: np.ndarray,
                     weight: float) -> np.ndarray:
    """float32[B, N]: mask, times `weight` from each response's `<think>` token on."""
    if weight == 1:
        return mask.astype(np.float32)
    after_think = np.cumsum(response == tokenizer.tag_ids["<think>"], axis=1) > 0
    return np.where(after_think, weight, 1.0).astype(np.float32) * mask


def move_weights(tokenizer, response: np.ndarray, weight: float) -> np.ndarray:
    """float32[B, N]: `weight` on the move where the think first names it, 1 elsewhere. The
    move is the response's first numbers after `<think>`, as many as its answer holds (the
    four coordinates of "Swap (1, 2) with (1, 3)" for an answer "(1, 2) (1, 3)"; the answer's
    own digit when the think names no number), so the weights need no game rules."""
    if weight == 1:
        return np.ones(response.shape, np.float32)
    return np.where(move_mask(tokenizer, response), weight, 1.0).astype(np.float32)


def move_mask(tokenizer, response: np.ndarray) -> np.ndarray:
    """bool[B, N]: the move where the think first names it (`move_weights`)."""
    numbers = np.isin(response, tokenizer.number_ids)
    after_think = np.cumsum(response == tokenizer.tag_ids["<think>"], axis=1) > 0
    in_answer = np.cumsum(response == tokenizer.tag_ids["<answer>"], axis=1) > 0
    count = (numbers & in_answer).sum(1, keepdims=True)
    rank = np.cumsum(numbers & after_think, axis=1)
    return numbers & after_think & (rank <= count)


def train(cfg: SFTConfig, out: str, resume: bool = False, quiet: bool = False,
          stop_after: int | None = None) -> dict:
    """Run the cold start; returns the last held-out metrics. Leaves a checkpoint in `out`.
    `stop_after`: stop (with a checkpoint) after that many steps, as if interrupted; Ctrl-C
    also saves a checkpoint before it stops the run."""
    games = episodes.GameSet.make(cfg.game, cfg.board_preset, cfg.prompt_style, cfg.image_first,
                                  cfg.restate_board)
    games.counts(cfg.batch), games.counts(cfg.eval_boards)  # ValueError unless they split
    mesh = sharding.make_mesh(cfg.fsdp)
    for name in ("batch", "think_batch"):
        if getattr(cfg, name) % mesh.size:
            raise ValueError(f"{name} {getattr(cfg, name)} must be a multiple of the "
                             f"{mesh.size} devices")
    if cfg.pretrained:
        graphdef, params, tokenizer, model_cfg = pretrained_model.load_policy(cfg.model,
                                                                              cfg.dtype)
        games = pretrained_model.fit(games, cfg.model)
    else:
        tokenizer = tokenization.default()
        model_cfg = vlm.config(cfg.model, **{"vocab_size": tokenizer.vocab_size,
                                             **cfg.model_overrides})
        graphdef, params = nnx.split(vlm.create(model_cfg, tokenizer.image_pad_id, cfg.seed))
    graphdef = vlm.with_remat(graphdef, params, cfg.remat)
    tx = optimizer(cfg)
    params = sharding.place(params, mesh)
    opt_state = sharding.place(tx.init(params), mesh)
    budget = games.response_budget(tokenizer)
    settings = dict(kind="sft", sft=dataclasses.asdict(cfg), model=dataclasses.asdict(model_cfg),
                    response_budget=budget, prompt_style=cfg.prompt_style,
                    image_first=cfg.image_first, restate_board=cfg.restate_board,
                    pretrained=cfg.model if cfg.pretrained else None)
    start = 0
    if resume and checkpoint.latest_step(out) is not None:
        saved = checkpoint.load_settings(out)
        if saved.get("sft") != settings["sft"]:
            raise ValueError(f"{out} holds a run with other settings: {saved.get('sft')}")
        start = checkpoint.latest_step(out)
        tree = checkpoint.restore(out, start, dict(params=params, opt_state=opt_state))
        params, opt_state = sharding.place(tree["params"], mesh), sharding.place(
            tree["opt_state"], mesh)
    os.makedirs(out, exist_ok=True)
    if not quiet:
        print(f"{cfg.game} ({cfg.board_preset}) cold start, variant {cfg.variant}: "
              f"{vlm.num_params(nnx.merge(graphdef, params)):,} parameters ({cfg.model}), "
              f"{cfg.steps} steps x {cfg.batch} boards, responses up to {budget} tokens"
              + (f", on {mesh.size} devices (fsdp {cfg.fsdp})" if mesh.size > 1 else ""))

    train_step = compiled_train_step(graphdef, cfg.optim, cfg.steps)
    prompt = games.prompt(tokenizer, model_cfg, cfg.batch)
    held_out = jax.device_put(
        games.deal(episodes.eval_key(cfg.seed), cfg.eval_boards, cfg.max_random_moves),
        sharding.copied(mesh))  # on the parameters' devices
    started = time.time()

    think_offsets = response_offsets(games.prompt(tokenizer, model_cfg, cfg.think_batch or 1))

    def step_fn(state, step):
        params, opt_state = state
        key = jax.random.fold_in(jax.random.key(cfg.seed), step)
        states = games.deal(key, cfg.batch, cfg.max_random_moves)
        batch = (prompt, games.draw(states), *targets(cfg, games, tokenizer, states, key, budget))
        if cfg.think_batch:
            more = games.deal(jax.random.fold_in(key, 1), cfg.think_batch, cfg.max_random_moves)
            batch += (think_rows(tokenizer, *targets(cfg, games, tokenizer, more, key, budget),
                                 think_offsets, cfg.think_from),)
        params, opt_state, loss = train_step(params, opt_state, *place_batch(batch, mesh))
        return (params, opt_state), dict(loss=float(loss),
                                         seconds=round(time.time() - started, 1))

    def evaluate_fn(state):
        policy = evaluation.ModelPolicy(graphdef, state[0], tokenizer, model_cfg, budget)
        return evaluation.play(games, policy, held_out)[0]

    def save_fn(state, step):
        checkpoint.save(out, step, dict(params=state[0], opt_state=state[1]), settings, tokenizer)

    _, _, metrics = loop.run((params, opt_state), start, cfg.steps, step_fn, evaluate_fn, save_fn,
                             loop.Log(out, start, LOG), cfg.eval_every, cfg.save_every, out,
                             "cold start", quiet, stop_after)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=sorted(RUN_PRESETS),
                        help="run size: model, steps, batch, learning rate (default: cpu); "
                             "flags given next to it win")
    parser.add_argument("--out", required=True, help="checkpoint folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    config.add_flags(parser, SFTConfig, skip=("model_overrides",), choices=dict(
        game=sorted(jaxgym.list_games()) + ["mix"], variant=("cold", "base"),
        prompt_style=game_text.PROMPT_STYLES, dtype=("float32", "bfloat16")))
    args = parser.parse_args(argv)
    given = config.given(args, SFTConfig)
    settings = {**RUN_PRESETS[args.preset], **given}
    if settings.get("model", SFTConfig.model) not in vlm.CONFIGS:  # a checkpoint folder
        settings = {**RUN_PRESETS[args.preset], **PRETRAINED, **given}
    steps = settings.get("steps", SFTConfig.steps)
    settings["eval_every"] = min(settings.get("eval_every", SFTConfig.eval_every), steps)
    try:
        cfg = config.build(SFTConfig, **settings)
    except ValueError as error:
        parser.error(str(error))
    if os.path.isdir(args.out) and checkpoint.latest_step(args.out) is not None and not args.resume:
        parser.error(f"{args.out} already holds a checkpoint; pass --resume or another --out")
    started = time.time()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill -TERM saves like Ctrl-C
    metrics = train(cfg, args.out, resume=args.resume)
    print(f"done in {time.time() - started:.0f} s; checkpoint in {args.out}")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

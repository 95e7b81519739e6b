"""Does the cold start learn the move? One change at a time, held-out valid-move rate vs steps.

    python -m bench.learnability --steps 600                       # every variant, easy Swap
    python -m bench.learnability --variants default,old-init --steps 1000 --seeds 0,1
    python -m bench.learnability --decoder --steps 1500            # the decoder alone, no image

Each variant trains the tiny VLM from scratch on the cold start's targets for fresh easy Swap
boards (the same loop as `policy.sft`: AdamW, warm-up and cosine, batch 32) and answers 256
held-out boards greedily every `--eval-every` steps. Variants (each one change to `default`,
today's model, brief prompt and targets; "a+b" combines changes):

    image-first    the image before the instructions (`image_first=True`)
    full-prompt    the game's whole instructions (152 tokens) before the image instead of
                   their first sentence (`prompt_style="brief"`)
    adam-0.95      Adam's second-moment decay at 0.95 instead of optax's default 0.999
    old-init       the model before the fixes: embeddings at 1/sqrt(width), positions at 0.02,
                   output head tied to the token embeddings, no recency bias
    no-positions   no learned positions (rotary only, as in Qwen2-VL)
    cells          the board's cells as learned tokens in place of the image tokens
    answer-only    empty perception and think: the expert's answer is the whole target
    valid-target   a uniformly random valid swap as the target instead of the expert's
    coordinates-first  the rationale gives the cells before the tiles' names ("Swap (1, 2)
                   with (1, 3): Red circle and Blue square.") instead of the cold start's
                   "Swap Red circle at (1, 2) with Blue square at (1, 3)."
    answer-weight  the think and answer tokens weigh 5x in the loss
    no-recency     without the decoder's ALiBi-style recency bias (`ModelConfig.recency_bias`)
    restate        the think starts by restating the board, one token a cell
                   (`episodes.restated_board`: "Board: AC AB AB AD ...")
    move-loss      only the move's four coordinate digits in the think (its first four digit
                   tokens) carry weight 1 in the loss; every other response token weighs
                   `--other-weight` (default 0). With it the evaluation is the decoder probe's:
                   the ground-truth response up to each digit, the model's own earlier digits,
                   and the most likely digit (perception is then not scored)

`--decoder` runs the probe without the VLM: the decoder alone reads the 16 cells as tokens and
writes r1 c1 r2 c2 (the symbolic version of the task), at the embedding and position scales
given by `--decoder-settings`, to show which of them the decoder needs; `--decoder-prefix N`
puts N constant tokens (as a prompt would) before the cells, `--decoder-between N` after them;
`--decoder-soft-target` scores each digit of the move against its distribution over the valid
moves that agree with the earlier digits instead of the expert's digit; `--decoder-hide-prefix`
masks the prefix from attention; `--decoder-think-batch N` trains N more boards a step without
the prefix, at the positions they hold after it (the cold start's `think_batch`).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import jaxgym
from jaxgym import text as game_text
from policy import episodes, model as vlm, sample, sft, tokenizer as tokenization
from policy.config import build

VARIANTS = ("default", "image-first", "full-prompt", "adam-0.95", "old-init", "no-positions",
            "cells", "answer-only", "valid-target", "coordinates-first", "answer-weight",
            "no-recency", "restate", "move-loss")

OLD_INIT = dict(embed_std=None, position_std=0.02, tie_embeddings=True, recency_bias=False)


class CellTokens(nnx.Module):
    """Stands in for the vision tower: the board's cells as learned embeddings, one per image
    token (easy Swap at 32 px a cell has one image token per cell). "Frames" are the boards."""

    def __init__(self, num_values: int, width: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(num_values, width, rngs=rngs,
                               embedding_init=nnx.initializers.normal(0.68))

    def __call__(self, boards: jax.Array) -> jax.Array:
        return self.embed(boards.reshape(boards.shape[0], -1) + 1)


def think_text(env, board: np.ndarray, action: int, coordinates_first: bool) -> str:
    if not coordinates_first:
        return game_text.rationale(env, board, action)
    names = game_text.value_names(env)
    r1, c1, r2, c2 = (int(x) for x in env.decode_action(action))
    return (f"Swap ({r1}, {c1}) with ({r2}, {c2}): {names[board[r1, c1] + 1]} and "
            f"{names[board[r2, c2] + 1]}.")


def target_texts(env, states, actions, changes: set[str]) -> list[str]:
    boards, actions = np.asarray(states.board), np.asarray(actions)
    if "answer-only" in changes:
        return [game_text.response_text("", "", game_text.answer_text(env, a)) for a in actions]
    restate = "restate" in changes
    return [game_text.response_text(
                game_text.describe_board(env, b),
                (episodes.restated_board(b) + " " if restate else "")
                + think_text(env, b, a, "coordinates-first" in changes),
                game_text.answer_text(env, a))
            for b, a in zip(boards, actions)]


@jax.jit
def random_valid_actions(key: jax.Array, legal_mask: jax.Array) -> jax.Array:
    """int32[B]: a uniformly random legal move of each board."""
    return jax.random.categorical(key, jnp.where(legal_mask, 0.0, -jnp.inf)).astype(jnp.int32)


def run_variant(variant: str, steps: int, eval_every: int, seed: int, batch: int = 32,
                eval_boards: int = 256, lr: float = 1e-3, quiet: bool = False,
                decision_weight: float | None = None, other_weight: float = 0.0) -> list[dict]:
    """Train one variant from scratch; its held-out metrics at every evaluation. A variant
    may combine changes with "+" ("valid-target+answer-weight"). `decision_weight`: the
    weight of the think and answer tokens (default 5 with "answer-weight", else 1)."""
    changes = set(variant.split("+"))
    env = jaxgym.make("swap", preset="easy")
    games = episodes.GameSet((env,), "full" if "full-prompt" in changes else "brief",
                             "image-first" in changes, "restate" in changes)
    tokenizer = tokenization.default()
    overrides = dict(vocab_size=tokenizer.vocab_size)
    overrides.update(OLD_INIT if "old-init" in changes else {})
    overrides.update(learned_positions=0) if "no-positions" in changes else None
    overrides.update(recency_bias=False) if "no-recency" in changes else None
    model_cfg = vlm.config("tiny", **overrides)
    model = vlm.create(model_cfg, tokenizer.image_pad_id, seed)
    if "cells" in changes:
        model.visual = CellTokens(env.num_tile_types + 1, model_cfg.width, nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    run_cfg = build(sft.SFTConfig, steps=steps, lr=lr, warmup_steps=steps // 20,
                    adam_b2=0.95 if "adam-0.95" in changes else 0.999,
                    decision_weight=decision_weight or (5.0 if "answer-weight" in changes else 1.0))
    tx = sft.optimizer(run_cfg)
    train_step = sft.make_train_step(graphdef, tx)
    opt_state = tx.init(params)
    prompt = games.prompt(tokenizer, model_cfg, batch)
    eval_prompt = games.prompt(tokenizer, model_cfg, eval_boards)
    budget = games.response_budget(tokenizer) + 8
    held_out = games.deal(episodes.eval_key(seed), eval_boards, 3)

    def inputs(states):
        return states[0].board if "cells" in changes else games.draw(states)

    history = []
    started = time.time()
    for step in tqdm(range(1, steps + 1), desc=variant, disable=quiet, leave=False):
        key = jax.random.fold_in(jax.random.key(seed), step)
        states = games.deal(key, batch, 3)
        actions = (random_valid_actions(jax.random.fold_in(key, 1), states[0].legal_action_mask)
                   if "valid-target" in changes else episodes.expert_actions(env, states[0]))
        response, mask = episodes.pad_responses(
            tokenizer, target_texts(env, states[0], actions, changes), budget)
        weights = sft.decision_weights(tokenizer, response, mask, run_cfg.decision_weight)
        if "move-loss" in changes:
            weights = move_weights(tokenizer, response, mask, other_weight)
        params, opt_state, loss = train_step(params, opt_state, prompt, inputs(states),
                                             response, weights)
        if "move-loss" in changes and (step % eval_every == 0 or step == steps):
            texts = target_texts(env, held_out[0], episodes.expert_actions(env, held_out[0]),
                                 changes)
            valid, distinct = forced_move_valid(graphdef, params, tokenizer, env, eval_prompt,
                                                inputs(held_out), held_out[0], texts, budget)
            history.append(dict(variant=variant, seed=seed, step=step, loss=round(float(loss), 4),
                                valid_move_rate=round(valid, 3), distinct_answers=distinct,
                                seconds=round(time.time() - started, 1)))
            if not quiet:
                tqdm.write(json.dumps(history[-1]))
        elif step % eval_every == 0 or step == steps:
            samples = sample.generate(graphdef, params, eval_prompt, inputs(held_out),
                                      jax.random.key(0), 0.0, max_new_tokens=budget,
                                      eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
            rewards = games.score(tokenizer, held_out, samples.tokens, samples.mask, jit=True)
            answers = np.asarray(rewards.action)
            history.append(dict(
                variant=variant, seed=seed, step=step, loss=round(float(loss), 4),
                valid_move_rate=round(float(rewards.valid.mean()), 3),
                perception_exact=round(float(rewards.perception.mean()), 3),
                distinct_answers=int(len(np.unique(answers))),
                seconds=round(time.time() - started, 1)))
            if not quiet:
                tqdm.write(json.dumps(history[-1]))
    history[-1]["think_token_loss"] = think_token_loss(
        graphdef, params, tokenizer, eval_prompt, inputs(held_out),
        target_texts(env, held_out[0], episodes.expert_actions(env, held_out[0]), changes), budget)
    if not quiet:
        tqdm.write(f"{variant}: held-out loss of each think token: {history[-1]['think_token_loss']}")
    return history


def digit_ids(tokenizer) -> dict[int, int]:
    """token id -> the digit it spells ("2" and " 2" alike)."""
    return {tokenizer.encode(text)[-1]: d for d in range(10) for text in (str(d), f" {d}")}


def move_positions(tokenizer, response: np.ndarray) -> np.ndarray:
    """int[B, 4]: where the move's r1 c1 r2 c2 are in each response, its first four digit
    tokens after <think>."""
    digits = np.isin(response, list(digit_ids(tokenizer)))
    after_think = np.cumsum(response == tokenizer.tag_ids["<think>"], axis=1) > 0
    return np.stack([np.flatnonzero(row)[:4] for row in digits & after_think])


@functools.partial(jax.jit, static_argnames=("graphdef",))
def logprobs_at(graphdef, params, prompt, frames, response, position) -> jax.Array:
    """float32[B, vocab]: the model's log-probs for response token `position` (int32[B]),
    given the prompt and the response before it."""
    model = nnx.merge(graphdef, params)
    prefix = model.encode_prefix(prompt.prefix, prompt.prefix_valid)
    tokens = jnp.concatenate([prompt.tokens, response], axis=1)
    valid = jnp.concatenate([prompt.valid, jnp.ones(response.shape, bool)], axis=1)
    logits = model(tokens, frames, valid, prefix, prompt.group)[:, prompt.tokens.shape[1] - 1:-1]
    picked = jnp.take_along_axis(logits, position[:, None, None], axis=1)[:, 0]
    return jax.nn.log_softmax(picked)


def move_weights(tokenizer, response, mask, other_weight: float) -> np.ndarray:
    """float32[B, N]: 1 on the move's four digits, `other_weight` on every other token."""
    weights = other_weight * mask.astype(np.float32)
    np.put_along_axis(weights, move_positions(tokenizer, response), 1.0, axis=1)
    return weights


def forced_move_valid(graphdef, params, tokenizer, env, prompt, inputs, states, texts,
                      budget) -> tuple[float, int]:
    """(valid-move rate, distinct moves): each digit of the move is the model's most likely
    one given the ground-truth response before the move and its own earlier digits."""
    response, _ = episodes.pad_responses(tokenizer, texts, budget)
    positions = move_positions(tokenizer, response)
    ids = digit_ids(tokenizer)
    spaced = {i: tokenizer.decode([i]).startswith(" ") for i in ids}
    # a row digit follows "(" and a column digit ", ": each is chosen among its own spelling
    candidates = {form: np.asarray([i for i in ids if spaced[i] == form]) for form in (False, True)}
    rows = np.arange(response.shape[0])
    chosen = []
    for k in range(4):
        logprobs = np.asarray(logprobs_at(graphdef, params, prompt, inputs,
                                          jnp.asarray(response), jnp.asarray(positions[:, k])))
        form = spaced[int(response[0, positions[0, k]])]
        best = candidates[form][np.argmax(logprobs[:, candidates[form]], axis=1)]
        response[rows, positions[:, k]] = best
        chosen.append([ids[int(i)] for i in best])
    r1, c1, r2, c2 = (jnp.asarray(x) for x in chosen)
    actions = np.asarray(jax.vmap(env.encode_action)(r1, c1, r2, c2))
    legal = np.asarray(states.legal_action_mask)
    valid = (actions >= 0) & legal[rows, np.clip(actions, 0, None)]
    return float(valid.mean()), len(set(zip(*(np.asarray(x).tolist() for x in chosen))))


def think_token_loss(graphdef, params, tokenizer, prompt, inputs, texts, budget) -> list:
    """[(token text, mean NLL)] of the first <think> tokens, teacher-forced on held-out
    targets: which tokens of the move the model has not learnt."""
    response, mask = episodes.pad_responses(tokenizer, texts, budget)
    nll = -np.asarray(sample.score(graphdef, params, prompt, inputs, jnp.asarray(response)))
    start = int(np.argmax(response[0] == tokenizer.tag_ids["<think>"])) + 1
    return [(tokenizer.decode([response[0, i]]), round(float(nll[:, i].mean()), 3))
            for i in range(start, min(start + 16, response.shape[1]))]


# ---- the decoder alone ---------------------------------------------------------------------

FIXED_INIT = dict(embed_std=0.33, position_std=0.33, tie_embeddings=False, recency_bias=False)
DECODER_SETTINGS = {
    # name: ModelConfig overrides of the tiny size; "default" is the tiny size as shipped
    "default": dict(),
    "qwen-init": dict(FIXED_INIT, embed_std=None, position_std=0.02, tie_embeddings=True),
    "rotary-only": dict(FIXED_INIT, embed_std=None, learned_positions=0, tie_embeddings=True),
    "positions-0.088": dict(FIXED_INIT, embed_std=None, position_std=0.088, tie_embeddings=True),
    "positions-0.088-untied": dict(FIXED_INIT, embed_std=None, position_std=0.088),
    "positions-0.33": dict(FIXED_INIT, embed_std=None, tie_embeddings=True),
    "embed-0.33-tied": dict(FIXED_INIT, tie_embeddings=True),
    "embed-1.0": dict(FIXED_INIT, embed_std=1.0, position_std=1.0),
    "embed-0.33 (fixed)": FIXED_INIT,
    "recency": dict(FIXED_INIT, recency_bias=True),
    "recency-rotary-only": dict(FIXED_INIT, recency_bias=True, learned_positions=0),
}


def run_decoder(setting: str, steps: int, eval_every: int, seed: int, batch: int = 32,
                lr: float = 1e-3, prefix: int = 0, between: int = 0, eval_boards: int = 512,
                quiet: bool = False, board: dict | None = None, words: bool = False,
                restate: bool = False, valid_target: bool = False, soft_target: bool = False,
                hide_prefix: bool = False, think_batch: int = 0, **sizes) -> list[dict]:
    """The tiny decoder (changed by `sizes`, e.g. width=64) on easy Swap's cells as tokens ->
    the expert's r1 c1 r2 c2, with `prefix` constant tokens before the cells and `between`
    after them. `board`: the Swap settings instead of the easy preset. `words`: each cell as
    three tokens, its colour, its shape and a separator (the end of a row has its own), as
    the perception text spells it, instead of one token. `restate`: the cells again, one
    token each (ids 224 on), after the `between` tokens and right before the move, as the
    cold start's think does with `restate_board`. `valid_target`: a uniformly random valid
    move as the target instead of the expert's. `soft_target`: each of the move's digits is
    scored against the distribution of that digit over the valid moves that agree with the
    target's earlier digits instead of the target's digit. `hide_prefix`: no token attends to
    the prefix (it is there, at its positions, but masked). `think_batch`: that many more
    boards a step, trained on the sequence after the prefix alone (the cells, the `between`
    tokens and the move) at the positions it holds in the whole sequence, as the cold start's
    `think_batch` trains the think without what comes before it."""
    program = _decoder_program(setting, batch, lr, steps, prefix, between,
                               tuple(sorted((board or dict(preset="easy")).items())), words,
                               restate, valid_target, soft_target, hide_prefix, think_batch,
                               tuple(sorted(sizes.items())))
    params = program.init(seed)
    opt_state = program.tx.init(params)
    boards, legal, _ = program.boards_and_moves(jax.random.key(10_000 + seed), eval_boards)
    history, started = [], time.time()
    for step in range(1, steps + 1):
        params, opt_state, loss = program.update(
            params, opt_state, jax.random.fold_in(jax.random.key(seed), step))
        if step % eval_every == 0 or step == steps:
            history.append(dict(setting=setting, prefix=prefix, between=between, words=words,
                                seed=seed,
                                step=step,
                                loss=round(float(loss), 4),
                                valid_move_rate=round(float(program.greedy_valid(params, boards, legal)), 3),
                                seconds=round(time.time() - started, 1)))
            if not quiet:
                print(json.dumps(history[-1]), flush=True)
    return history



@functools.lru_cache(maxsize=4)
def _decoder_program(setting, batch, lr, steps, prefix, between, board, words, restate,
                     valid_target, soft_target, hide_prefix, think_batch, sizes):
    """`run_decoder`'s jitted functions, built once for every seed of one configuration (the
    seed enters through the parameters and the keys, so the seeds share their compilation)."""
    env = jaxgym.make("swap", **dict(board))
    cfg = vlm.config("tiny", vocab_size=256, **DECODER_SETTINGS[setting], **dict(sizes))
    graphdef = nnx.graphdef(vlm.create(cfg, 63, 0))
    cells = env.rows * env.cols
    coords = jnp.asarray([np.asarray(env.decode_action(a)) for a in range(env.num_actions)])
    digit, start = 32, 48  # token ids: cell values from 0, digits from 32, then a start token
    before = jnp.asarray(64 + np.arange(prefix) % 128, jnp.int32)  # the prompt stand-in
    after = jnp.asarray(208 + np.arange(between) % 48, jnp.int32)

    def forward(params, tokens, offset=0):
        """Logits of sequences whose first token sits at position `offset`."""
        model = nnx.merge(graphdef, params)
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]) + offset, tokens.shape)
        seen = jnp.ones(tokens.shape, bool)
        if hide_prefix and offset == 0:
            seen = seen.at[:, :prefix].set(False)
        return model.text_logits(tokens, positions, seen)

    @functools.partial(jax.jit, static_argnums=1)
    def boards_and_moves(key, n):
        states = jax.vmap(env.reset)(jax.random.split(key, n))
        moves = (random_valid_actions(jax.random.fold_in(key, 1), states.legal_action_mask)
                 if valid_target else jax.vmap(env.expert_action)(states))
        return states.board.reshape(n, cells), states.legal_action_mask, coords[moves]

    separators = jnp.asarray([200 + (i % env.cols == env.cols - 1) for i in range(cells)])

    def spelt(boards):  # int32[n, cells] -> int32[n, cells or 3 cells]
        if not words:
            return boards
        colour, shape = boards // env.shapes + 16, boards % env.shapes + 26  # ids 16-31
        seps = jnp.broadcast_to(separators, boards.shape)
        return jnp.stack([colour, shape, seps], -1).reshape(boards.shape[0], -1)

    width = cells * (3 if words else 1) + (cells if restate else 0)

    def sequence(boards, written):
        n = boards.shape[0]
        parts = [jnp.broadcast_to(before, (n, prefix)), spelt(boards),
                 jnp.broadcast_to(after, (n, between))]
        parts += [boards + 224] if restate else []
        return jnp.concatenate(parts + [jnp.full((n, 1), start), written + digit], 1)

    def loss_fn(params, boards, legal, moves, short=False):
        """Mean over the boards; `short`: the sequences without their prefix."""
        tokens = sequence(boards, moves[:, :3])
        if short:
            logits = forward(params, tokens[:, prefix:], prefix)[:, width + between:]
        else:
            logits = forward(params, tokens)[:, prefix + width + between:]
        logp = jax.nn.log_softmax(logits)[..., digit:digit + 16]  # [B, 4, digits]
        if not soft_target:
            return -jnp.mean(jnp.take_along_axis(logp, moves[..., None], 2))
        agree = jnp.cumprod(coords[None, :, :] == moves[:, None, :], axis=2)  # [B, A, 4]
        earlier = jnp.concatenate([jnp.ones_like(agree[..., :1]), agree[..., :-1]], 2)
        weight = (earlier * legal[..., None]).astype(jnp.float32)  # valid moves agreeing so far
        target = jnp.einsum("bak,akd->bkd", weight, jax.nn.one_hot(coords, 16))
        target = target / jnp.sum(target, -1, keepdims=True)
        return -jnp.mean(jnp.sum(target * logp, -1))

    tx = sft.optimizer(build(sft.SFTConfig, steps=steps, lr=lr, warmup_steps=steps // 20))

    @jax.jit
    def update(params, opt_state, key):
        boards, legal, moves = boards_and_moves(key, batch)

        def total(params):
            loss = loss_fn(params, boards, legal, moves)
            if not think_batch:
                return loss
            more = boards_and_moves(jax.random.fold_in(key, 1), think_batch)
            return (batch * loss + think_batch * loss_fn(params, *more, short=True)) / (
                batch + think_batch)

        loss, grads = jax.value_and_grad(total)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def greedy_valid(params, boards, legal):
        written = jnp.zeros((boards.shape[0], 0), jnp.int32)
        for _ in range(4):
            nxt = jnp.argmax(forward(params, sequence(boards, written))[:, -1], -1) - digit
            written = jnp.concatenate([written, nxt[:, None]], 1)
        hit = jnp.all(written[:, None, :] == coords[None], axis=-1)  # [B, actions]
        return jnp.mean(jnp.any(hit & legal, axis=-1))

    def init(seed):
        return nnx.state(vlm.create(cfg, 63, seed))

    return types.SimpleNamespace(init=init, tx=tx, update=update, greedy_valid=greedy_valid,
                                 boards_and_moves=boards_and_moves)


def table(rows: list[dict], name: str) -> str:
    """Markdown: one line per (variant, seed), valid-move rate at each evaluation."""
    steps = sorted({r["step"] for r in rows})
    lines = [f"| {name} | seed | " + " | ".join(str(s) for s in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    for key in dict.fromkeys((r[name], r["seed"]) for r in rows):
        by_step = {r["step"]: r for r in rows if (r[name], r["seed"]) == key}
        cells = [f"{by_step[s]['valid_move_rate']:.2f}" if s in by_step else "" for s in steps]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--decoder", action="store_true", help="the decoder-alone probe")
    parser.add_argument("--decoder-settings", default=",".join(DECODER_SETTINGS))
    parser.add_argument("--decoder-prefix", type=int, default=0,
                        help="constant tokens before the cells (the decoder probe)")
    parser.add_argument("--decoder-between", type=int, default=0,
                        help="constant tokens between the cells and the answer")
    parser.add_argument("--decoder-words", action="store_true",
                        help="each cell as colour, shape and separator tokens (as perception "
                             "text spells it) instead of one token")
    parser.add_argument("--decoder-restate", action="store_true",
                        help="the cells again, one token each, right before the move (the "
                             "cold start's restate_board)")
    parser.add_argument("--decoder-valid-target", action="store_true",
                        help="a uniformly random valid move as the target (the decoder probe)")
    parser.add_argument("--decoder-soft-target", action="store_true",
                        help="each digit of the move scored against its distribution over the "
                             "valid moves that agree with the earlier digits (the decoder probe)")
    parser.add_argument("--decoder-hide-prefix", action="store_true",
                        help="no token attends to the constant prefix (the decoder probe)")
    parser.add_argument("--decoder-think-batch", type=int, default=0,
                        help="more boards a step trained without the prefix, at the positions "
                             "they hold after it (the decoder probe; policy.sft's think_batch)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--decision-weight", type=float, default=None,
                        help="weight of the think and answer tokens in the loss, against 1 for "
                             "the perception text (default 1; 5 with answer-weight)")
    parser.add_argument("--other-weight", type=float, default=0.0,
                        help="with move-loss: the weight of every response token but the move's "
                             "four digits")
    parser.add_argument("--json", help="write every evaluation here (JSON lines)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    if args.decoder:
        names = args.decoder_settings.split(",")
        unknown = [n for n in names if n not in DECODER_SETTINGS]
        if unknown:
            parser.error(f"unknown decoder settings {unknown}; choose from {list(DECODER_SETTINGS)}")
        for name in names:
            for seed in seeds:
                rows += run_decoder(name, args.steps, args.eval_every, seed, lr=args.lr,
                                    prefix=args.decoder_prefix, between=args.decoder_between,
                                    words=args.decoder_words, restate=args.decoder_restate,
                                    valid_target=args.decoder_valid_target,
                                    soft_target=args.decoder_soft_target,
                                    hide_prefix=args.decoder_hide_prefix,
                                    think_batch=args.decoder_think_batch)
    else:
        names = args.variants.split(",")
        unknown = [n for n in names if not set(n.split("+")) <= set(VARIANTS)]
        if unknown:
            parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
        for name in names:
            for seed in seeds:
                rows += run_variant(name, args.steps, args.eval_every, seed, lr=args.lr,
                                    decision_weight=args.decision_weight,
                                    other_weight=args.other_weight)
    if args.json:
        with open(args.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(table(rows, "setting" if args.decoder else "variant"))


if __name__ == "__main__":
    main()

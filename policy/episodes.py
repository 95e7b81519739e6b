"""What the policy's jobs share: dealing boards, drawing them, the prompt around the image, and
the response texts the cold start learns (made on the fly from the engine).

    states = deal(env, key, batch=64, max_random_moves=3)   # fresh boards, some advanced
    frames = draw(env, states)                               # uint8[B, H, W, 3]
    prompt = prompt_batch(env, tokenizer, cfg, batch=64)           # a sample.Prompt
    texts = cold_start_texts(env, states)                    # perception + rationale + expert
    ids, mask = pad_responses(tokenizer, texts, length)
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import render
from jaxgym import text as game_text
from jaxgym.core import Env, State, random_legal_action
from policy.model import ModelConfig
from policy.sample import Prompt
from policy.tokenizer import GameTokenizer

HELD_OUT = 1_000_000_007  # evaluation boards come from fold_in(key(seed), HELD_OUT)


def eval_key(seed: int) -> jax.Array:
    """The key of a run's held-out boards: training folds in step numbers, never this."""
    return jax.random.fold_in(jax.random.key(seed), HELD_OUT)


@functools.partial(jax.jit, static_argnames=("env", "batch", "max_random_moves"))
def deal(env: Env, key: jax.Array, batch: int, max_random_moves: int = 0) -> State:
    """`batch` fresh boards, each then advanced by 0..max_random_moves random legal moves."""
    deal_key, count_key, move_key = jax.random.split(key, 3)
    states = jax.vmap(env.reset)(jax.random.split(deal_key, batch))
    moves = jax.random.randint(count_key, (batch,), 0, max_random_moves + 1)

    def advance(states, k):
        keys = jax.random.split(jax.random.fold_in(move_key, k), batch)
        actions = jax.vmap(random_legal_action)(keys, states.legal_action_mask)
        stepped = jax.vmap(env.step)(states, actions)
        keep = (k < moves) & ~stepped.terminated  # never hand out a finished board
        return jax.tree.map(lambda new, old: jnp.where(
            keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), stepped, states), None

    states, _ = jax.lax.scan(advance, states, jnp.arange(max_random_moves))
    return states.replace(step_count=jnp.zeros_like(states.step_count))


@functools.partial(jax.jit, static_argnames=("env",))
def draw(env: Env, states: State) -> jax.Array:
    """uint8[B, H, W, 3]: the boards as the policy sees them."""
    return render.frames(env, states)


def prompt_ids(env: Env, tokenizer: GameTokenizer, cfg: ModelConfig) -> list[int]:
    """The tokens before the response for this game (one placeholder per image token)."""
    return tokenizer.prompt_ids(game_text.prompt(env), cfg.num_image_tokens(render.frame_shape(env)))


def prompt_batch(env: Env, tokenizer: GameTokenizer, cfg: ModelConfig, batch: int) -> Prompt:
    """The same prompt for `batch` boards: the game's instructions once, each board's image
    part after them."""
    prefix, rest = tokenizer.prompt_parts(
        game_text.prompt(env), cfg.num_image_tokens(render.frame_shape(env)))
    rest = jnp.tile(jnp.asarray(rest, jnp.int32)[None], (batch, 1))
    return Prompt(prefix=jnp.asarray(prefix, jnp.int32)[None],
                  prefix_valid=jnp.ones((1, len(prefix)), bool), tokens=rest,
                  valid=jnp.ones(rest.shape, bool), group=jnp.zeros((batch,), jnp.int32))


# ---- target responses ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("env",))
def expert_actions(env: Env, states: State) -> jax.Array:
    """int32[B]: the expert's move on each board."""
    return jax.vmap(env.expert_action)(states)


def cold_start_texts(env: Env, states: State, actions: jax.Array | None = None) -> list[str]:
    """The G1 cold start's targets: ground-truth perception, a one-line rationale and the
    expert's answer (or `actions`, if given), for each board of a batch."""
    if actions is None:
        actions = expert_actions(env, states)
    boards, actions = np.asarray(states.board), np.asarray(actions)
    return [game_text.response_text(game_text.describe_board(env, b),
                                    game_text.rationale(env, b, a), game_text.answer_text(env, a))
            for b, a in zip(boards, actions)]


def base_texts(env: Env, key: jax.Array, batch: int) -> list[str]:
    """The format-only targets of the G0 base model: empty perception and reasoning, and an
    answer drawn uniformly from the game's whole action space (legal or not)."""
    actions = np.asarray(jax.random.randint(key, (batch,), 0, env.num_actions))
    return [game_text.response_text("", "", game_text.answer_text(env, a)) for a in actions]


def pad_responses(tokenizer: GameTokenizer, texts: Sequence[str],
                  length: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32[B, length] ids, bool[B, length] mask): each text, its end of turn, then padding.
    ValueError if a response does not fit."""
    ids = np.full((len(texts), length), tokenizer.pad_id, np.int32)
    mask = np.zeros((len(texts), length), bool)
    for i, t in enumerate(texts):
        row = tokenizer.encode(t) + [tokenizer.eos_id]
        if len(row) > length:
            raise ValueError(f"a response of {len(row)} tokens does not fit in {length}")
        ids[i, :len(row)], mask[i, :len(row)] = row, True
    return ids, mask


def response_budget(env: Env, tokenizer: GameTokenizer, samples: int = 64) -> int:
    """How many tokens the policy may write: the longest cold-start target of `samples`
    boards, plus a quarter for slack, rounded up to a multiple of 8."""
    states = deal(env, jax.random.key(0), samples, 0)
    longest = max(len(tokenizer.encode(t)) + 1 for t in cold_start_texts(env, states))
    return -(-int(longest * 1.25) // 8) * 8

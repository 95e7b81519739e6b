"""What the policy's jobs share: dealing boards, drawing them, the prompt around the image, and
the response texts the cold start learns (made on the fly from the engine).

    states = deal(env, key, batch=64, max_random_moves=3)   # fresh boards, some advanced
    frames = draw(env, states)                               # uint8[B, H, W, 3]
    prompt = prompt_batch(env, tokenizer, cfg, batch=64)           # a sample.Prompt
    texts = cold_start_texts(env, states)                    # perception + rationale + expert
    ids, mask = pad_responses(tokenizer, texts, length)

`GameSet` does the same for a job's games: one game, or all of them sharing each batch ("mix":
a `jaxgym.multigame.MultiGame`, drawn on one canvas by `render.mix_frames`); the cold start and
the trainer go through it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxgym
import render
from jaxgym import multigame, text as game_text
from jaxgym.core import Env, State
from jaxgym.multigame import MultiGame
from policy.model import ModelConfig
from policy.rewards import Rewards, RewardFn, compiled as compiled_rewards, host_rewards, on_device
from policy.sample import Prompt
from policy.tokenizer import GameTokenizer, cell_code

HELD_OUT = 1_000_000_007  # evaluation boards come from fold_in(key(seed), HELD_OUT)


def eval_key(seed: int) -> jax.Array:
    """The key of a run's held-out boards: training folds in step numbers, never this."""
    return jax.random.fold_in(jax.random.key(seed), HELD_OUT)


deal = functools.partial(jax.jit, static_argnames=("env", "batch", "max_random_moves"))(
    multigame.deal)
"""`jaxgym.multigame.deal`, compiled once per game and batch: `batch` fresh boards, each then
advanced by 0..max_random_moves random legal moves."""


@functools.partial(jax.jit, static_argnames=("env",))
def draw(env: Env, states: State) -> jax.Array:
    """uint8[B, H, W, 3]: the boards as the policy sees them."""
    return render.frames(env, states)


def prompt_ids(env: Env, tokenizer: GameTokenizer, cfg: ModelConfig, style: str = "full",
               image_first: bool = False) -> list[int]:
    """The tokens before the response for this game (one placeholder per image token)."""
    return tokenizer.prompt_ids(game_text.prompt(env, style),
                                cfg.num_image_tokens(render.frame_shape(env)), image_first)


def prompt_batch(env: Env, tokenizer: GameTokenizer, cfg: ModelConfig, batch: int,
                 style: str = "full", image_first: bool = False) -> Prompt:
    """The same prompt for `batch` boards (`GameSet.prompt` of this one game)."""
    return GameSet((env,), style, image_first).prompt(tokenizer, cfg, batch)


# ---- target responses ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("env",))
def expert_actions(env: Env, states: State) -> jax.Array:
    """int32[B]: the expert's move on each board."""
    return jax.vmap(env.expert_action)(states)


def restated_board(board: np.ndarray) -> str:
    """The board in one token a cell, in reading order: "Board: AC AB AB AD ...". A model
    trained from scratch learns its move far sooner when it reads the board this way right
    before the move than from the perception text alone (docs/learnability.md)."""
    return "Board:" + "".join(" " + cell_code(v) for v in np.asarray(board).ravel())


def cold_start_texts(env: Env, states: State, actions: jax.Array | None = None,
                     restate: bool = False) -> list[str]:
    """The G1 cold start's targets: ground-truth perception, a one-line rationale and the
    expert's answer (or `actions`, if given), for each board of a batch. `restate`: the
    rationale starts with `restated_board`."""
    if actions is None:
        actions = expert_actions(env, states)
    boards, actions = np.asarray(states.board), np.asarray(actions)
    return [game_text.response_text(
                game_text.describe_board(env, b),
                (restated_board(b) + " " if restate else "") + game_text.rationale(env, b, a),
                game_text.answer_text(env, a))
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


def response_budget(env: Env, tokenizer: GameTokenizer, samples: int = 64,
                    restate: bool = False) -> int:
    """How many tokens the policy may write: the longest cold-start target of `samples`
    boards, plus a quarter for slack, rounded up to a multiple of 8."""
    states = deal(env, jax.random.key(0), samples, 0)
    longest = max(len(tokenizer.encode(t)) + 1
                  for t in cold_start_texts(env, states, restate=restate))
    return -(-int(longest * 1.25) // 8) * 8


# ---- one game or a mix -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GameSet:
    """The games a job plays. One game: the functions above, unchanged. Several ("mix"): each
    batch is split evenly, game after game (`jaxgym.multigame` order), every board is drawn on
    one canvas, each game keeps its own instructions (a prompt prefix per game) and rewards.
    Batches of States are tuples, one State per game."""

    envs: tuple[Env, ...]
    prompt_style: str = "full"  # `jaxgym.text.prompt`'s style: "full" or "brief"
    image_first: bool = False  # the image before the instructions (`prompt_parts`)
    restate_board: bool = False  # the targets' think starts with `restated_board`

    @staticmethod
    def make(game: str, board_preset: str | None = None, prompt_style: str = "full",
             image_first: bool = False, restate_board: bool = False) -> "GameSet":
        """`game` ("mix": every game) at `board_preset`."""
        names = sorted(jaxgym.list_games()) if game == "mix" else [game]
        return GameSet(tuple(jaxgym.make(name, board_preset) for name in names), prompt_style,
                       image_first, restate_board)

    @property
    def single(self) -> bool:
        return len(self.envs) == 1

    def counts(self, batch: int) -> tuple[int, ...]:
        return self.multigame(batch).counts

    def multigame(self, batch: int) -> MultiGame:
        """`batch` boards split evenly over the games (ValueError unless they split)."""
        return _split_evenly(self.envs, batch)

    def frame_shape(self) -> tuple[int, int, int]:
        return render.canvas_shape(self.envs) + (3,)

    def deal(self, key: jax.Array, batch: int, max_random_moves: int = 0) -> tuple[State, ...]:
        """`MultiGame.reset`: fresh boards, some advanced by random moves; one State a game."""
        return _reset_mix(self.multigame(batch), key, max_random_moves)

    def draw(self, states: tuple[State, ...]) -> jax.Array:
        """uint8[B, H, W, 3]: every board on the games' common canvas (one game: its frames)."""
        return render.draw_mix(self.multigame(sum(len(s.board) for s in states)), states)

    def step(self, states: tuple[State, ...], actions: jax.Array,
             auto_reset: bool = False) -> tuple[State, ...]:
        """Every board advanced by its action (int32[B], board order); compiled once per mix.
        `auto_reset`: a fresh board wherever an episode ends (`jaxgym.AutoReset`)."""
        mix = self.multigame(sum(len(s.board) for s in states))
        return _step_mix(dataclasses.replace(mix, auto_reset=auto_reset), states, actions)

    def labels(self) -> tuple[str, ...]:
        """One name per game, for per-game metrics (`MultiGame.labels`)."""
        return MultiGame(self.envs, (1,) * len(self.envs)).labels

    def prompt(self, tokenizer: GameTokenizer, cfg: ModelConfig, batch: int) -> Prompt:
        """Each board's game's shared part (one prefix row per game) and its own part (the
        image, and the instructions too if `image_first`), both left-padded."""
        image_tokens = cfg.num_image_tokens(self.frame_shape())
        parts = [tokenizer.prompt_parts(game_text.prompt(env, self.prompt_style), image_tokens,
                                        self.image_first) for env in self.envs]
        prefix, prefix_valid = _left_padded([p for p, _ in parts], tokenizer.pad_id)
        group = np.repeat(np.arange(len(self.envs)), self.counts(batch)).astype(np.int32)
        rest, valid = _left_padded([r for _, r in parts], tokenizer.pad_id)
        return Prompt(jnp.asarray(prefix), jnp.asarray(prefix_valid), jnp.asarray(rest[group]),
                      jnp.asarray(valid[group]), jnp.asarray(group))

    def repeat(self, states: tuple[State, ...], n: int) -> tuple[State, ...]:
        """Every board n times in a row (GRPO's groups), game order kept."""
        return tuple(jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), s) for s in states)

    def score(self, tokenizer: GameTokenizer, states: tuple[State, ...], tokens: jax.Array,
              mask: jax.Array, jit: bool = False) -> Rewards:
        """Rewards of B responses, each by its board's game (`jit`: the cached compiled
        functions, for calls outside a jitted step). A tokenizer without a device path
        (`rewards.on_device`) is scored from the decoded texts, on the host."""
        if not on_device(tokenizer):
            tokens, mask = np.asarray(tokens), np.asarray(mask)
            return self.score_texts(states, [tokenizer.decode_response(t, m)
                                             for t, m in zip(tokens, mask)])
        def one_game(env, state, rows):
            fn = compiled_rewards(env, tokenizer) if jit else RewardFn(env, tokenizer)
            return fn(state, tokens[rows], mask[rows])

        return self._per_game(states, one_game)

    def score_texts(self, states: tuple[State, ...], texts: list) -> Rewards:
        """`score` of B response texts (any characters, any tokenizer's; not text: invalid)."""
        return self._per_game(states, lambda env, state, rows: host_rewards(env, state,
                                                                            texts[rows]))

    def _per_game(self, states: tuple[State, ...], fn) -> Rewards:
        """fn(env, state, rows: slice of the batch) for each game, concatenated."""
        out, start = [], 0
        for env, state in zip(self.envs, states):
            n = len(state.board)
            out.append(fn(env, state, slice(start, start + n)))
            start += n
        return Rewards(*(jnp.concatenate(field) for field in zip(*out)))

    def cold_start_texts(self, states: tuple[State, ...]) -> list[str]:
        return [t for env, s in zip(self.envs, states)
                for t in cold_start_texts(env, s, restate=self.restate_board)]

    def base_texts(self, key: jax.Array, batch: int) -> list[str]:
        return [t for g, (env, n) in enumerate(zip(self.envs, self.counts(batch)))
                for t in base_texts(env, key if self.single else jax.random.fold_in(key, g), n)]

    def response_budget(self, tokenizer: GameTokenizer) -> int:
        return max(response_budget(env, tokenizer, restate=self.restate_board)
                   for env in self.envs)


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32[R, width] rows, right-aligned, bool[R, width] which entries are real)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], valid[i, width - len(r):] = r, True
    return ids, valid


@functools.lru_cache(maxsize=64)
def _split_evenly(envs: tuple[Env, ...], batch: int) -> MultiGame:
    return MultiGame.split_evenly(envs, batch)


@functools.partial(jax.jit, static_argnames=("mix", "max_random_moves"))
def _reset_mix(mix: MultiGame, key: jax.Array, max_random_moves: int) -> tuple[State, ...]:
    return mix.reset(key, max_random_moves)


@functools.partial(jax.jit, static_argnames=("mix",))
def _step_mix(mix: MultiGame, states: tuple[State, ...], actions: jax.Array) -> tuple[State, ...]:
    return mix.step(states, actions)

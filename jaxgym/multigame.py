"""Several games in one batch: what multi-game training consumes.

    mix = jaxgym.multigame.make_mix({"swap": 1024, "shisensho": 1024, "2048": 1024}, preset="easy")
    states = mix.reset(key)                       # one batched State per game, as a tuple
    states = mix.reset(key, max_random_moves=3)   # ... each advanced by 0..3 random moves
    frames = render.mix_frames(mix, states)       # uint8[3072, H, W, 3], one canvas for all
    states = mix.step(states, actions)            # actions: int32[3072], board order below
    mix.prompts(); mix.perceptions(states); mix.parse_answers(responses)
    mix.metrics(states)                           # per-game reward, valid-move rate, ...

Boards are laid out game after game: the first `counts[0]` boards are `envs[0]`'s, and so on
(`mix.game_ids` says which game each board plays). Every method that takes or returns per-board
arrays uses that flat order, so a policy sees one batch; `step`, `expert_actions`, `random_actions`
and `metrics` are pure and run under one `jax.jit` with the rest of a training step (and so does
`render.mix_frames`, which draws every board on one canvas). Each game keeps its own State
(board shapes and action counts differ), so a batch is a tuple of States, one per game.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import text
from jaxgym.core import Env, State, is_legal, make, random_legal_action, require
from jaxgym.wrappers import AutoReset

@dataclasses.dataclass(frozen=True)
class MultiGame:
    """`counts[i]` boards of `envs[i]`, for each i, stepped as one batch.

    auto_reset: deal a fresh board wherever an episode ends (`jaxgym.AutoReset`, per game).
    """

    envs: tuple[Env, ...]
    counts: tuple[int, ...]
    auto_reset: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "envs", tuple(self.envs))
        object.__setattr__(self, "counts", tuple(self.counts))
        require(len(self.envs) >= 1, "a MultiGame needs at least one game")
        require(all(isinstance(env, Env) for env in self.envs), "envs must be jaxgym games (jaxgym.make)")
        require(len(self.counts) == len(self.envs),
                f"one count per game: {len(self.envs)} games but {len(self.counts)} counts")
        require(all(isinstance(n, int) and n >= 1 for n in self.counts),
                f"counts must be ints >= 1, got {self.counts}")

    @classmethod
    def split_evenly(cls, envs: Sequence[Env], batch: int, **options: Any) -> "MultiGame":
        """`batch` boards shared equally by `envs`; ValueError unless they split evenly."""
        require(len(envs) >= 1 and batch % len(envs) == 0,
                f"a batch of {batch} boards does not split evenly over the {len(envs)} games "
                "of the mix")
        return cls(envs=tuple(envs), counts=(batch // len(envs),) * len(envs), **options)

    # ---- layout ----

    @property
    def labels(self) -> tuple[str, ...]:
        """One name per game, for metrics: the game's name, numbered if it appears twice."""
        names = [env.name for env in self.envs]
        return tuple(n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names))

    @property
    def batch_size(self) -> int:
        return sum(self.counts)

    @property
    def game_ids(self) -> np.ndarray:
        """int32[batch]: which game (index into `envs`) each board plays."""
        return np.repeat(np.arange(len(self.envs), dtype=np.int32), self.counts)

    def _split(self, flat: jax.Array) -> list[jax.Array]:
        """A per-board array cut into one piece per game."""
        return jnp.split(flat, np.cumsum(self.counts)[:-1])

    # ---- the batch ----

    def reset(self, key: jax.Array, max_random_moves: int = 0) -> tuple[State, ...]:
        """Fresh boards for every game (game i's from `fold_in(key, i)`; one game's from `key`),
        each then advanced by 0..max_random_moves random legal moves (`deal`)."""
        keys = ([key] if len(self.envs) == 1
                else [jax.random.fold_in(key, i) for i in range(len(self.envs))])
        return tuple(deal(env, k, n, max_random_moves)
                     for env, n, k in zip(self.envs, self.counts, keys))

    def step(self, states: tuple[State, ...], actions: Any) -> tuple[State, ...]:
        """One move on every board. actions: int32[batch] in board order."""
        actions = jnp.asarray(actions, jnp.int32)
        require(actions.shape == (self.batch_size,),
                f"actions must have shape ({self.batch_size},), got {actions.shape}")
        moved = []
        for env, state, action in zip(self.envs, states, self._split(actions)):
            step = AutoReset(env).step if self.auto_reset else jax.vmap(env.step)
            moved.append(step(state, action))
        return tuple(moved)

    def expert_actions(self, states: tuple[State, ...]) -> jax.Array:
        """int32[batch]: every game's expert move."""
        return jnp.concatenate([jax.vmap(env.expert_action)(s) for env, s in zip(self.envs, states)])

    def random_actions(self, key: jax.Array, states: tuple[State, ...]) -> jax.Array:
        """int32[batch]: a uniformly random legal move per board (-1 where none is legal)."""
        keys = jax.random.split(key, len(self.envs))
        return jnp.concatenate([
            jax.vmap(random_legal_action)(jax.random.split(k, n), s.legal_action_mask)
            for k, n, s in zip(keys, self.counts, states)
        ])

    def legal(self, states: tuple[State, ...], actions: Any) -> jax.Array:
        """bool[batch]: each board's action is a legal move of its game."""
        actions = jnp.asarray(actions, jnp.int32)
        return jnp.concatenate([
            jax.vmap(is_legal)(s.legal_action_mask, a) for s, a in zip(states, self._split(actions))
        ])

    def field(self, states: tuple[State, ...], name: str) -> jax.Array:
        """A per-board State field with no game-specific shape, flattened: e.g. `reward` f32[batch]."""
        return jnp.concatenate([getattr(s, name) for s in states])

    # ---- text (host side) ----

    def prompts(self) -> list[str]:
        """The prompt of each board's game, in board order."""
        return [text.prompt(env) for env, n in zip(self.envs, self.counts) for _ in range(n)]

    def perceptions(self, states: tuple[State, ...]) -> list[str]:
        """The ground-truth perception text of every board, in board order."""
        out = []
        for env, state in zip(self.envs, states):
            boards = np.asarray(state.board)
            out.extend(text.describe_board(env, board) for board in boards)
        return out

    def parse_answers(self, responses: Sequence[Any]) -> np.ndarray:
        """int32[batch]: each response parsed by its board's game (-1 where malformed)."""
        require(len(responses) == self.batch_size,
                f"need one response per board ({self.batch_size}), got {len(responses)}")
        envs = [self.envs[g] for g in self.game_ids]
        return np.array([text.parse_answer(env, r) for env, r in zip(envs, responses)], np.int32)

    # ---- metrics ----

    def metrics(self, states: tuple[State, ...]) -> dict[str, dict[str, jax.Array]]:
        """Per game, about the move just made: mean game reward, valid-move rate (reward >= 0:
        finished boards, which do not move, count as valid), and the share of boards whose
        episode is over. jit-able; `jax.device_get` it for floats."""
        return {
            label: {
                "mean_reward": jnp.mean(s.reward),
                "valid_move_rate": jnp.mean(s.reward >= 0),
                "done_rate": jnp.mean(s.terminated | s.truncated),
            }
            for label, s in zip(self.labels, states)
        }


def deal(env: Env, key: jax.Array, batch: int, max_random_moves: int = 0) -> State:
    """`batch` fresh boards of one game, each then advanced by 0..max_random_moves uniformly
    random legal moves (a board is never advanced into a finished episode); step counts start
    at 0. Varied positions for training and evaluation. jit-able (`max_random_moves` static)."""
    deal_key, count_key, move_key = jax.random.split(key, 3)
    states = jax.vmap(env.reset)(jax.random.split(deal_key, batch))
    moves = jax.random.randint(count_key, (batch,), 0, max_random_moves + 1)
    states = random_moves(env, states, move_key, moves, max_random_moves)
    return states.replace(step_count=jnp.zeros_like(states.step_count))


def random_moves(env: Env, states: State, key: jax.Array, moves: jax.Array,
                 max_moves: int) -> State:
    """Board b of the batch advanced by moves[b] (<= max_moves, static) uniformly random legal
    moves, stopping before a move that would end its episode. jit-able."""
    batch = len(states.board)

    def advance(states, k):
        keys = jax.random.split(jax.random.fold_in(key, k), batch)
        actions = jax.vmap(random_legal_action)(keys, states.legal_action_mask)
        stepped = jax.vmap(env.step)(states, actions)
        keep = (k < moves) & ~stepped.terminated
        return jax.tree.map(lambda new, old: jnp.where(
            keep.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), stepped, states), None

    return jax.lax.scan(advance, states, jnp.arange(max_moves))[0]


def make_mix(counts: Mapping[str, int], preset: str | None = None, **options: Any) -> MultiGame:
    """A MultiGame from game names and board counts, every game at `preset` (None: defaults).
    `options` go to MultiGame (auto_reset).

    >>> mix = make_mix({"swap": 1024, "shisensho": 1024, "2048": 1024}, preset="easy")
    """
    require(len(counts) >= 1, "make_mix needs at least one game")
    envs = tuple(make(name, preset=preset) for name in counts)
    return MultiGame(envs=envs, counts=tuple(counts.values()), **options)

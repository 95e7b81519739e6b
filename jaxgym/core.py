"""The Env contract every game follows, the State pytree, and the game registry.

A game is a frozen dataclass of integers (its rules and difficulty), fixed at `make` and
validated there. Everything that changes from board to board lives in `State`. All methods that
take or return a `State` are pure, jit- and vmap-able, and keep shapes fixed:

    env = jaxgym.make("swap", rows=6, cols=6)
    state = jax.vmap(env.reset)(jax.random.split(key, 4096))
    state = jax.vmap(env.step)(state, actions)          # actions: int32[4096]
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxgym import chance

INVALID_ACTION = -1
"""The action that is never legal: `encode_action` and `text.parse_answer` return it for moves
that do not exist. Stepping it counts as an invalid move (board unchanged, reward -1)."""

EMPTY = "-"
"""How every game names an empty cell in perception text."""


@struct.dataclass
class State:
    """One board. Under `jax.vmap` every field gains a leading batch axis.

    board: int32[rows, cols]            the game's board encoding (see docs/DESIGN.md)
    key: PRNG key                       chance for the next step (refills, spawns)
    step_count: int32[]                 moves made since reset
    reward: float32[]                   the game's own reward for the last step; -1 if invalid
    terminated: bool[]                  no move is possible any more
    truncated: bool[]                   `env.max_steps` moves were made
    legal_action_mask: bool[num_actions]
    """

    board: jax.Array
    key: jax.Array
    step_count: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    legal_action_mask: jax.Array

    @property
    def done(self) -> jax.Array:
        """bool[]: the episode is over (terminated or truncated)."""
        return self.terminated | self.truncated


def require(condition: bool, message: str) -> None:
    """Eager validation of a difficulty setting: raise ValueError(message) unless condition."""
    if not condition:
        raise ValueError(message)


def is_concrete(x: Any) -> bool:
    """True when x holds values (not a tracer), so host-side checks can look at it."""
    return not isinstance(x, jax.core.Tracer)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Env(abc.ABC):
    """Base of every game. Subclasses add their own integer fields and implement the
    abstract methods; `reset`, `from_board` and `step` here add the bookkeeping all games share.

    Fields shared by all games:
      max_steps: truncate the episode after this many moves (0: never).
      tile_px:   side of one board cell in rendered pixels (a perceptual-difficulty knob).
    """

    name: ClassVar[str] = ""
    max_steps: int = 0
    tile_px: int = 32

    def __post_init__(self) -> None:
        require(
            isinstance(self.max_steps, int) and self.max_steps >= 0,
            f"max_steps must be an int >= 0 (0 means no limit), got {self.max_steps!r}",
        )
        require(
            isinstance(self.tile_px, int) and 8 <= self.tile_px <= 256,
            f"tile_px must be an int in [8, 256], got {self.tile_px!r}",
        )
        self.validate()

    # ---- what a game implements -------------------------------------------------------------

    def validate(self) -> None:
        """Raise ValueError, saying what to change, if the difficulty setting is impossible."""

    @property
    @abc.abstractmethod
    def board_shape(self) -> tuple[int, int]:
        """(rows, cols) of `State.board`."""

    @property
    @abc.abstractmethod
    def num_actions(self) -> int:
        """Size of the action space; actions are int32 in [0, num_actions)."""

    @property
    @abc.abstractmethod
    def num_tile_types(self) -> int:
        """Number of distinct non-empty cell values the renderer must draw."""

    @abc.abstractmethod
    def _deal(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A fresh board and its legal mask: (int32[rows, cols], bool[num_actions])."""

    @abc.abstractmethod
    def _settle_given(self, board: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A checked, hand-made board made playable by the game's own rules: (board, mask)."""

    @abc.abstractmethod
    def _check_board(self, board: np.ndarray) -> None:
        """Raise ValueError if a concrete hand-made board breaks the game's encoding."""

    @abc.abstractmethod
    def _step(self, state: State, action: jax.Array) -> State:
        """Apply one move to a live board: new board, key, reward, mask and terminated."""

    @abc.abstractmethod
    def expert_action(self, state: State) -> jax.Array:
        """int32[]: the game's teacher move for this state (jit-able)."""

    # ---- what a game says and shows (host side) -------------------------------------------

    cell_separator: ClassVar[str] = " | "
    """What joins the cell names of a row in perception text (rows are joined by newlines)."""

    paper_warm_up: ClassVar[int] = 0
    """Random legal moves a board takes before the paper's evaluation protocol plays it."""

    @abc.abstractmethod
    def instructions(self) -> str:
        """The whole prompt shown with the board image: the rules, then the answer format."""

    @abc.abstractmethod
    def cell_names(self, board: np.ndarray) -> list[list[str]]:
        """What each cell of a concrete board (int[rows, cols]) is called in perception text;
        `EMPTY` for an empty cell. IndexError for a value no board holds."""

    @abc.abstractmethod
    def rationale(self, board: np.ndarray, action: int) -> str:
        """A one-sentence reason for playing `action` (in range) on `board`: the <think> text
        of the cold start's targets."""

    @abc.abstractmethod
    def sprites(self) -> np.ndarray:
        """uint8[n_sprites, tile_px, tile_px, 3]: sprite v draws board value v >= 0, the last
        one the empty cell (`jaxgym.sprites`). Drawn on the host, once per setting."""

    # ---- shared bookkeeping ----------------------------------------------------------------

    def reset(self, key: jax.Array) -> State:
        """A fresh board drawn from `key`."""
        key, deal_key = jax.random.split(key)
        board, mask = self._deal(deal_key)
        return self._new_state(board, mask, key)

    def from_board(self, board: Any, key: jax.Array) -> State:
        """The state for a hand-made board (encoding in docs/DESIGN.md). Concrete boards are checked
        on the host and a bad one raises ValueError; traced boards are taken as they are."""
        if is_concrete(board):
            array = np.asarray(board)
            require(
                array.shape == self.board_shape,
                f"{self.name}: board must have shape {self.board_shape}, got {array.shape}",
            )
            require(
                np.issubdtype(array.dtype, np.integer),
                f"{self.name}: board must hold integers, got dtype {array.dtype}",
            )
            self._check_board(array)
        board = jnp.asarray(board, jnp.int32)
        key, settle_key = jax.random.split(key)
        board, mask = self._settle_given(board, settle_key)
        return self._new_state(board, mask, key)

    def step(self, state: State, action: Any) -> State:
        """One move. Stepping a finished episode changes nothing and gives reward 0."""
        action = jnp.asarray(action, jnp.int32)
        moved = self._step(state, action)
        step_count = state.step_count + 1
        moved = moved.replace(
            step_count=step_count,
            truncated=jnp.asarray(self.max_steps > 0) & (step_count >= self.max_steps),
        )
        finished = state.replace(reward=jnp.zeros_like(state.reward))
        return jax.tree.map(lambda old, new: jnp.where(state.done, old, new), finished, moved)

    def _new_state(self, board: jax.Array, mask: jax.Array, key: jax.Array) -> State:
        return State(
            board=board,
            key=key,
            step_count=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            terminated=~jnp.any(mask),
            truncated=jnp.zeros((), bool),
            legal_action_mask=mask,
        )


class PairEnv(Env):
    """A game whose move picks two cells. Its action codec is part of the contract: answers
    name the two cells, `(r1, c1) (r2, c2)`, and `encode_action` maps them to an action.
    Every other game answers with the action id, one ASCII digit (`jaxgym.text`)."""

    verb: ClassVar[str] = "Pick"
    """The rationale's first word: "Swap (1, 2) with (1, 3): Red circle and Blue square."."""

    @abc.abstractmethod
    def encode_action(self, r1, c1, r2, c2) -> jax.Array:
        """int32[]: the action on cells (r1, c1) and (r2, c2), or INVALID_ACTION for a pair
        that is no move of the game (jit-able)."""

    @abc.abstractmethod
    def decode_action(self, action) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(r1, c1, r2, c2) int32 scalars of an action; all INVALID_ACTION when it is out of
        range (jit-able)."""

    def rationale(self, board: np.ndarray, action: int) -> str:
        names = self.cell_names(np.asarray(board))
        r1, c1, r2, c2 = (int(x) for x in self.decode_action(action))
        # the cells before the tiles' names: the move is the think's first tokens, where a
        # small model learns it fastest (docs/learnability.md, section 6)
        return f"{self.verb} ({r1}, {c1}) with ({r2}, {c2}): {names[r1][c1]} and {names[r2][c2]}."


def is_legal(mask: jax.Array, action: jax.Array) -> jax.Array:
    """bool[]: `action` is in range and allowed by `mask` (bool[num_actions])."""
    in_range = (action >= 0) & (action < mask.shape[-1])
    return in_range & mask[jnp.clip(action, 0, mask.shape[-1] - 1)]


SAMPLE_BLOCK = 256
"""Masks longer than this are sampled in two levels (`random_legal_action`)."""


def random_legal_action(key: jax.Array, mask: jax.Array) -> jax.Array:
    """int32[]: a uniformly random legal action, or INVALID_ACTION when none is legal.

    Gives every action 32 hashed random bits from one seed (`jaxgym.chance`) and takes the
    legal action with the largest. A mask longer than `SAMPLE_BLOCK` (Shisen-Sho's 10,296
    pairs) is cut into blocks: a block is drawn with probability proportional to its legal
    actions, then an action within it as above, so each legal action still has probability
    1 / (legal actions), and the hashing and the arg-max (a slow reduction on the CPU) cover
    one block instead of the whole mask. The one pass over the mask left is a block count.
    """
    n = mask.shape[-1]
    seed = chance.seed_from_key(key)
    if n <= SAMPLE_BLOCK:
        return _pick_largest(seed, mask)
    legal_ends = jnp.cumsum(_block_counts(mask))  # legal actions up to each block's end
    blocks, total = legal_ends.shape[0], legal_ends[-1]
    # the r-th legal action, r uniform below total (modulo bias under total / 2**32)
    r = chance.cell_bits(seed, 1, ()) % jnp.maximum(total, 1).astype(jnp.uint32)
    block = jnp.minimum(jnp.sum(legal_ends.astype(jnp.uint32) <= r), blocks - 1).astype(jnp.int32)
    in_block = block * SAMPLE_BLOCK + jnp.arange(SAMPLE_BLOCK)
    action = block * SAMPLE_BLOCK + _pick_largest(seed, mask.at[in_block].get(mode="fill", fill_value=False))
    return jnp.where(total > 0, action, INVALID_ACTION)


def _block_counts(mask: jax.Array) -> jax.Array:
    """int32[blocks]: legal actions in each `SAMPLE_BLOCK` of the mask, the last one short.
    Summed 32 at a time and without padding the mask: on the CPU a longer sum, or a pad, is
    a full-size copy of the mask first."""
    n = mask.shape[-1]
    full = n // SAMPLE_BLOCK
    runs = mask[: full * SAMPLE_BLOCK].reshape(full, SAMPLE_BLOCK // 32, 32)
    counts = jnp.sum(jnp.sum(runs, axis=2, dtype=jnp.int32), axis=1)
    if n > full * SAMPLE_BLOCK:
        counts = jnp.append(counts, jnp.sum(mask[full * SAMPLE_BLOCK:], dtype=jnp.int32))
    return counts


def _pick_largest(seed: jax.Array, mask: jax.Array) -> jax.Array:
    """int32[]: the legal action with the largest hashed bits; INVALID_ACTION if none."""
    bits = chance.cell_bits(seed, 0, mask.shape) | jnp.uint32(1)
    action = jnp.argmax(jnp.where(mask, bits, jnp.uint32(0))).astype(jnp.int32)
    return jnp.where(jnp.any(mask), action, INVALID_ACTION)


# ---- registry -------------------------------------------------------------------------------

_GAMES: dict[str, type[Env]] = {}
_PRESETS: dict[str, dict[str, Mapping[str, Any]]] = {}


def register(name: str, presets: Mapping[str, Mapping[str, Any]]):
    """Class decorator: make `cls` available as `make(name)`; `presets` maps a preset name to
    the constructor arguments it sets (`paper` should be the paper's defaults)."""

    def add(cls: type[Env]) -> type[Env]:
        cls.name = name
        _GAMES[name] = cls
        _PRESETS[name] = {p: dict(kw) for p, kw in presets.items()}
        return cls

    return add


def list_games() -> dict[str, tuple[str, ...]]:
    """Every registered game name, mapped to its preset names."""
    return {name: tuple(_PRESETS[name]) for name in sorted(_GAMES)}


def knobs(name: str) -> dict[str, Any]:
    """The constructor arguments of a game and their defaults."""
    cls = _game_class(name)
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def make(name: str, preset: str | None = None, **difficulty: Any) -> Env:
    """The game `name`, at a named preset and/or with explicit difficulty knobs (which win).

    >>> env = make("swap", preset="easy", tile_px=24)
    """
    cls = _game_class(name)
    settings: dict[str, Any] = {}
    if preset is not None:
        require(
            preset in _PRESETS[name],
            f"unknown preset {preset!r} for {name}; choose one of {sorted(_PRESETS[name])}",
        )
        settings.update(_PRESETS[name][preset])
    settings.update(difficulty)
    allowed = knobs(name)
    unknown = sorted(set(settings) - set(allowed))
    require(not unknown, f"{name} has no setting {unknown}; its settings are {sorted(allowed)}")
    return cls(**settings)


def _game_class(name: str) -> type[Env]:
    require(name in _GAMES, f"unknown game {name!r}; choose one of {sorted(_GAMES)}")
    return _GAMES[name]

"""Per-sample rewards of a response to a board, on the device from token ids (the project's
tokenizer) or on the host from text (any tokenizer). Both give the same numbers for every response.

    format      1 if all three tag pairs are there, once each, in order, with only whitespace
                outside them (`jaxgym.text.format_ok`)
    perception  1 if the <perception> block, stripped, is exactly the board's perception text
    perception_share  the share of that text's characters the stripped block has at the same
                place (`jaxgym.text.perception_share`): partial credit, 1 for an exact block
    action      the move the <answer> names (`jaxgym.text.parse_answer`), -1 if none
    valid       1 if that move is legal on the board
    shaped      the shaped reward of stepping a copy of the board with it (what RL sums): +1
                if the move scored, else -1 (malformed and out-of-range answers step as
                invalid moves)
    points      the game reward: the game's own points for that step (-1 for an invalid move)

The device path never compares token ids with a reference tokenization: it expands the response
into the characters its tokens stand for (a table made from the tokenizer; each special token is
one code of its own) and runs the same checks as the host's regular expressions on them, so a
sequence that spells the right text with unusual tokens scores like the text.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import text as game_text
from jaxgym.core import INVALID_ACTION, Env, State, is_legal
from policy.tokenizer import SPECIAL_TOKENS, TAG_TOKENS, GameTokenizer

SPECIAL_CODE = 1 << 16  # a special token id i is the one character SPECIAL_CODE + i
WHITESPACE = (9, 10, 11, 12, 13, 28, 29, 30, 31, 32)  # str.isspace() / re's \s, ASCII range
ANSWER_SPACE = (9, 10, 11, 12, 13, 32)  # \s under re.ASCII (the answer patterns)
NUMBER, OPTIONAL_COMMA = -1, -2  # answer-pattern items that are not literal characters


class Rewards(NamedTuple):
    format: jax.Array  # float32[B]
    perception: jax.Array  # float32[B]
    perception_share: jax.Array  # float32[B]
    action: jax.Array  # int32[B]
    valid: jax.Array  # float32[B]
    shaped: jax.Array  # float32[B]
    points: jax.Array  # float32[B]


# ---- characters ------------------------------------------------------------------------------


def compact(pieces: jax.Array, lengths: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Concatenate variable-length pieces: int32[P, L] (the first lengths[p] of row p count)
    -> (int32[size] characters, -1 after the end; int32[] length).
    [[7, 8], [9, 0]], lengths [2, 1] -> [7, 8, 9, -1, ...], 3."""
    p, l = pieces.shape
    starts = jnp.cumsum(lengths) - lengths
    inside = jnp.arange(l)[None, :] < lengths[:, None]
    where = jnp.where(inside, starts[:, None] + jnp.arange(l)[None, :], size)  # size: dropped
    out = jnp.full((size,), -1, jnp.int32).at[where.ravel()].set(pieces.ravel(), mode="drop")
    return out, jnp.minimum(jnp.sum(lengths), size)


def char_table(tokenizer: GameTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(int32[V, L] characters of each token id, int32[V] their counts): ordinary tokens spell
    their text, special tokens are one code each (SPECIAL_CODE + id), padding is empty."""
    tok = tokenizer.tokenizer
    specials = {tok.token_to_id(t) for t in SPECIAL_TOKENS}
    specials |= {i for i in range(tokenizer.vocab_size) if tok.id_to_token(i).startswith("<|")}
    texts = [[SPECIAL_CODE + i] if i in specials else [ord(c) for c in tok.id_to_token(i)]
             for i in range(tokenizer.vocab_size)]
    texts[tokenizer.pad_id] = []
    width = max(len(t) for t in texts)
    chars = np.full((len(texts), width), -1, np.int32)
    for i, t in enumerate(texts):
        chars[i, :len(t)] = t
    return chars, np.array([len(t) for t in texts], np.int32)


def _is(chars: jax.Array, codes: Sequence[int]) -> jax.Array:
    return jnp.any(chars[..., None] == jnp.asarray(codes, jnp.int32), axis=-1)


def _tag_span(chars: jax.Array, opening: int, closing: int):
    """(found, start, end) of the text strictly between the only `opening` and the only
    `closing` code, found False if either is missing or repeated or they are out of order."""
    at_open, at_close = chars == opening, chars == closing
    start, end = jnp.argmax(at_open) + 1, jnp.argmax(at_close)
    found = (jnp.sum(at_open) == 1) & (jnp.sum(at_close) == 1) & (start <= end)
    return found, start, end


# ---- the answer pattern ----------------------------------------------------------------------


def answer_program(kind: str) -> tuple[np.ndarray, int]:
    """The answer pattern as items (literal character codes, NUMBER, OPTIONAL_COMMA) with
    whitespace allowed between any two, and the most digits a number may have."""
    if kind == "digit":
        return np.array([NUMBER], np.int32), 1
    cell = [ord("("), NUMBER, ord(","), NUMBER, ord(")")]
    return np.array(cell + [OPTIONAL_COMMA] + cell, np.int32), 4


def match_answer(chars: jax.Array, inside: jax.Array, items: jax.Array,
                 max_digits: int) -> tuple[jax.Array, jax.Array]:
    """Run the answer pattern over the characters where `inside` holds.
    chars: int32[N]; inside: bool[N] -> (matched bool[], numbers int32[4], in order)."""
    n_items = items.shape[0]

    def step(carry, x):
        item, in_number, digits, value, numbers, count, failed = carry
        c, use = x
        is_digit = (c >= 48) & (c <= 57)
        grows = in_number & is_digit
        closes = in_number & ~is_digit
        numbers = jnp.where(closes, numbers.at[count].set(value), numbers)
        count, item = count + closes, item + closes
        spare = ~grows & ~_is(c, ANSWER_SPACE)  # a character that must match the next item
        expect = items[jnp.minimum(item, n_items - 1)]
        skip = spare & (item < n_items) & (expect == OPTIONAL_COMMA) & (c != ord(","))
        item = item + skip
        expect = items[jnp.minimum(item, n_items - 1)]
        starts = spare & (expect == NUMBER) & is_digit
        literal = spare & ((expect == c) | ((expect == OPTIONAL_COMMA) & (c == ord(","))))
        bad = spare & ((item >= n_items) | ~(starts | literal))
        bad = bad | (grows & (digits >= max_digits))
        new = (
            item + literal,
            grows | starts,
            jnp.where(grows, digits + 1, jnp.where(starts, 1, 0)),
            jnp.where(grows, value * 10 + c - 48, jnp.where(starts, c - 48, 0)),
            numbers, count, failed | bad,
        )
        return tuple(jnp.where(use, a, b) for a, b in zip(new, carry)), None

    zero = jnp.int32(0)
    init = (zero, jnp.bool_(False), zero, zero, jnp.zeros(4, jnp.int32), zero, jnp.bool_(False))
    (item, in_number, _, value, numbers, count, failed), _ = jax.lax.scan(
        step, init, (chars, inside))
    numbers = jnp.where(in_number, numbers.at[count].set(value), numbers)
    item = item + in_number
    return ~failed & (item == n_items), numbers


# ---- device rewards ------------------------------------------------------------------------


class RewardFn:
    """Rewards on the device for one game and the project's tokenizer.

        reward_fn = RewardFn(env, tokenizer)
        rewards = reward_fn(states, tokens, mask)   # batched State, int32[B, N], bool[B, N]

    jit-able; everything game-specific is read from `jaxgym.text` once, here."""

    def __init__(self, env: Env, tokenizer: GameTokenizer):
        self.env = env
        chars, lengths = char_table(tokenizer)
        self.chars, self.lengths = jnp.asarray(chars), jnp.asarray(lengths)
        self.pad_id, self.eos_id = tokenizer.pad_id, tokenizer.eos_id
        self.tags = {t: SPECIAL_CODE + tokenizer.tag_ids[t] for t in TAG_TOKENS}
        names = [[ord(c) for c in name] for name in game_text.value_names(env)]
        self.separator = [ord(c) for c in game_text.cell_separator(env)]
        width = max(max(len(n) for n in names), len(self.separator))
        pad = lambda codes: list(codes) + [-1] * (width - len(codes))
        self.names = jnp.asarray([pad(n) for n in names], jnp.int32)
        self.name_lengths = jnp.asarray([len(n) for n in names], jnp.int32)
        self.separator_piece, self.newline_piece = np.array(pad(self.separator)), np.array(pad([10]))
        self.kind = game_text.answer_kind(env)
        items, self.max_digits = answer_program(self.kind)
        self.items = jnp.asarray(items)
        rows, cols = env.board_shape
        self.perception_size = rows * cols * 2 * width

    def response_chars(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        """int32[N * L]: the characters of one response (tokens under mask, before the first
        end of turn; -1 after the end). tokens: int32[N]; mask: bool[N]."""
        live = mask & (jnp.cumsum(tokens == self.eos_id) == 0)
        lengths = jnp.where(live, self.lengths[tokens], 0)
        return compact(self.chars[tokens], lengths, tokens.shape[0] * self.chars.shape[1])[0]

    def perception_chars(self, board: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(int32[size], int32[]): the perception text of one board, as `text.perception`:
        cell names, each followed by the separator, a newline at a row's end, nothing at the
        last cell. board: int32[rows, cols]."""
        rows, cols = board.shape
        last_col = (np.arange(rows * cols) % cols) == cols - 1
        tails = np.where(last_col[:, None], self.newline_piece, self.separator_piece)
        tail_lengths = np.where(last_col, 1, len(self.separator))
        tail_lengths[-1] = 0
        values = jnp.clip(board.ravel() + 1, 0, self.names.shape[0] - 1)
        pieces = jnp.stack([self.names[values], jnp.asarray(tails)], axis=1)
        lengths = jnp.stack([self.name_lengths[values], jnp.asarray(tail_lengths)], axis=1)
        return compact(pieces.reshape(2 * rows * cols, -1), lengths.ravel(), self.perception_size)

    def _one(self, board: jax.Array, tokens: jax.Array, response_mask: jax.Array):
        chars = self.response_chars(tokens, response_mask)
        idx = jnp.arange(chars.shape[0])
        spans = [_tag_span(chars, self.tags[f"<{t}>"], self.tags[f"</{t}>"])
                 for t in game_text.TAGS]
        # format: each span found, in order, only whitespace (or the end) outside them
        (p_ok, p_start, p_end), (t_ok, t_start, t_end), (a_ok, a_start, a_end) = spans
        ordered = (p_end < t_start) & (t_end < a_start)
        inside = jnp.zeros(chars.shape, bool)
        for _, start, end in spans:
            inside |= (idx >= start - 1) & (idx <= end)
        outside_ok = jnp.all(inside | _is(chars, WHITESPACE) | (chars < 0))
        format_ok = p_ok & t_ok & a_ok & ordered & outside_ok
        # perception: the stripped block equals the truth
        truth, truth_len = self.perception_chars(board)
        in_block = (idx >= p_start) & (idx < p_end)
        solid = in_block & ~_is(chars, WHITESPACE)
        first = jnp.argmax(solid)
        last = chars.shape[0] - 1 - jnp.argmax(solid[::-1])
        length = jnp.where(jnp.any(solid), last - first + 1, 0)
        place = jnp.arange(truth.shape[0])
        window = jnp.take(chars, first + place, mode="fill", fill_value=-2)
        same = jnp.all((window == truth) | (place >= truth_len))
        perception_ok = p_ok & (length == truth_len) & same
        # perception_share: the places that agree, up to the first "<" (or special token)
        cut = (window == ord("<")) | (window >= SPECIAL_CODE)  # the host text's "<" of a token
        before_cut = jnp.cumsum(cut) == 0
        agree = (window == truth) & (place < truth_len) & (first + place <= last) & before_cut
        share = jnp.where(p_ok & jnp.any(solid), jnp.sum(agree) / jnp.maximum(truth_len, 1), 0.0)
        # answer
        matched, numbers = match_answer(chars, (idx >= a_start) & (idx < a_end), self.items,
                                        self.max_digits)
        matched = matched & a_ok
        if self.kind == "digit":
            action = jnp.where(matched & (numbers[0] < self.env.num_actions), numbers[0],
                               INVALID_ACTION)
        else:
            rows, cols = self.env.board_shape
            r1, c1, r2, c2 = numbers
            in_range = (r1 < rows) & (r2 < rows) & (c1 < cols) & (c2 < cols)
            action = jnp.where(matched & in_range, self.env.encode_action(r1, c1, r2, c2),
                               INVALID_ACTION)
        return format_ok, perception_ok, share, action.astype(jnp.int32)

    def __call__(self, states: State, tokens: jax.Array, mask: jax.Array) -> Rewards:
        fmt, perception, share, action = jax.vmap(self._one)(states.board, tokens, mask)
        return _step_rewards(self.env, states, fmt, perception, share, action)


def on_device(tokenizer: Any) -> bool:
    """Whether responses of this tokenizer are scored on the device (the project's
    `GameTokenizer`, whose tags are tokens of their own); others' on the host from their text
    (`host_rewards`), which gives the same numbers."""
    return isinstance(tokenizer, GameTokenizer)


@functools.lru_cache(maxsize=None)
def _points_fn(env: Env):
    return jax.jit(lambda states, action: jax.vmap(env.step)(states, action).reward)


@functools.lru_cache(maxsize=None)
def compiled(env: Env, tokenizer: GameTokenizer):
    """`RewardFn(env, tokenizer)`, jitted once per game and tokenizer."""
    return jax.jit(RewardFn(env, tokenizer).__call__)


def _step_rewards(env: Env, states: State, fmt, perception, share, action) -> Rewards:
    valid = jax.vmap(is_legal)(states.legal_action_mask, action)
    points = _points_fn(env)(states, action)
    return Rewards(
        format=jnp.asarray(fmt, jnp.float32),
        perception=jnp.asarray(perception, jnp.float32),
        perception_share=jnp.asarray(share, jnp.float32),
        action=jnp.asarray(action, jnp.int32),
        valid=valid.astype(jnp.float32),
        shaped=jnp.where(valid & (points > 0), 1.0, -1.0).astype(jnp.float32),
        points=points.astype(jnp.float32),
    )


# ---- host rewards ----------------------------------------------------------------------------


def host_rewards(env: Env, states: State, texts: Sequence[Any]) -> Rewards:
    """The same rewards from response texts (decoded by any tokenizer). states: a batch."""
    boards = np.asarray(states.board)
    fmt = [game_text.format_ok(t) for t in texts]
    truths = [game_text.describe_board(env, b) for b in boards]
    perception = [game_text.perception_ok(t, truth) for t, truth in zip(texts, truths)]
    share = [game_text.perception_share(t, truth) for t, truth in zip(texts, truths)]
    action = [game_text.parse_answer(env, t) for t in texts]
    return _step_rewards(env, states, np.array(fmt), np.array(perception), np.array(share),
                         jnp.asarray(action, jnp.int32))

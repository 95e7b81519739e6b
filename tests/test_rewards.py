"""Rewards: hand-written responses with known rewards, and the device path (token ids) equal to
the host path (decoded text) on every response, malformed ones included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import jaxgym
from jaxgym import text
from policy import rewards as R, tokenizer as tokenization

TOK = tokenization.default()
SWAP = jaxgym.make("swap", "easy")
BOARD = np.array([[0, 0, 1, 0],
                  [1, 2, 3, 2],
                  [2, 3, 2, 3],
                  [3, 1, 0, 1]], np.int32)  # swapping (0, 2) and (0, 3) lines up three 0s
STATE = SWAP.from_board(BOARD, jax.random.key(0))
TRUTH = text.describe_board(SWAP, BOARD)


def batch_of(state, n):
    return jax.tree.map(lambda x: jnp.repeat(x[None], n, 0), state)


def pad_ids(rows, length=None):
    """Token id rows, each ended by the end of turn, padded: (int32[R, length], bool mask)."""
    rows = [list(r) + [TOK.eos_id] for r in rows]
    length = length or max(map(len, rows))
    ids = np.full((len(rows), length), TOK.pad_id, np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return jnp.asarray(ids), jnp.asarray(ids != TOK.pad_id)


def tokenize(texts, length=None):
    return pad_ids([TOK.encode(t) for t in texts], length)


SWAP_REWARDS = jax.jit(R.RewardFn(SWAP, TOK).__call__)


def both_paths(env, states, tokens, mask):
    reward_fn = SWAP_REWARDS if env is SWAP else jax.jit(R.RewardFn(env, TOK).__call__)
    device = reward_fn(states, tokens, mask)
    texts = [TOK.decode_response(t, m) for t, m in zip(np.asarray(tokens), np.asarray(mask))]
    host = R.host_rewards(env, states, texts)
    for name in R.Rewards._fields:
        np.testing.assert_array_equal(getattr(device, name), getattr(host, name), err_msg=name)
    return device


CASES = {  # response -> (format, perception, valid, game)
    "right": (text.response_text(TRUTH, "Swap.", "(0, 2) (0, 3)"), (1, 1, 1, 1)),
    "right, reversed cells": (text.response_text(TRUTH, "", "(0, 3),(0, 2)"), (1, 1, 1, 1)),
    "wrong move": (text.response_text(TRUTH, "", "(1, 0) (1, 1)"), (1, 1, 0, -1)),
    "off the board": (text.response_text(TRUTH, "", "(9, 9) (9, 8)"), (1, 1, 0, -1)),
    "not neighbours": (text.response_text(TRUTH, "", "(0, 0) (2, 2)"), (1, 1, 0, -1)),
    "five digits": (text.response_text(TRUTH, "", "(00000, 2) (0, 3)"), (1, 1, 0, -1)),
    "no tags": ("(0, 2) (0, 3)", (0, 0, 0, -1)),
    "answer only": ("<answer>(0, 2) (0, 3)</answer>", (0, 0, 1, 1)),
    "perception wrong": (text.response_text(TRUTH.replace("Red", "Green", 1), "",
                                            "(0, 2) (0, 3)"), (1, 0, 1, 1)),
    "perception padded by spaces": (text.response_text(" \n" + TRUTH + "  ", "", "(0, 2) (0, 3)"),
                                    (1, 1, 1, 1)),
    "perception cut short": (text.response_text(TRUTH.rsplit(" | ", 1)[0], "", "(0, 2) (0, 3)"),
                             (1, 0, 1, 1)),
    "text outside the tags": (text.response_text(TRUTH, "", "(0, 2) (0, 3)") + " yes",
                              (0, 1, 1, 1)),
    "two answers": (text.response_text(TRUTH, "", "(0, 2) (0, 3)") + "<answer>1</answer>",
                    (0, 1, 0, -1)),
    "tags out of order": ("<think></think><perception>" + TRUTH + "</perception><answer>(0, 2) "
                          "(0, 3)</answer>", (0, 1, 1, 1)),
    "empty": ("", (0, 0, 0, -1)),
}


def test_hand_written_responses_have_known_rewards():
    names = list(CASES)
    tokens, mask = tokenize([CASES[n][0] for n in names])
    got = both_paths(SWAP, batch_of(STATE, len(names)), tokens, mask)
    for i, name in enumerate(names):
        expected = CASES[name][1]
        actual = (got.format[i], got.perception[i], got.valid[i], got.shaped[i])
        assert tuple(float(x) for x in actual) == expected, name
    right = names.index("right")
    assert got.points[right] >= 6 and got.action[right] == SWAP.encode_action(0, 2, 0, 3)
    assert float(got.points[names.index("wrong move")]) == -1


def test_2048_digit_answers():
    env = jaxgym.make("2048", "easy")
    state = env.reset(jax.random.key(3))
    truth = text.perception(env, state)
    legal = np.flatnonzero(np.asarray(state.legal_action_mask))
    answers = [str(legal[0]), f" {legal[0]} ", "7", "12", "", "up"]
    tokens, mask = tokenize([text.response_text(truth, "", a) for a in answers])
    got = both_paths(env, batch_of(state, len(answers)), tokens, mask)
    assert got.action.tolist() == [legal[0], legal[0], -1, -1, -1, -1]
    assert got.perception.tolist() == [1.0] * len(answers)


def test_compact_worked_example():
    chars, n = R.compact(jnp.array([[7, 8], [9, 0], [5, 6]]), jnp.array([2, 1, 0]), 5)
    assert chars.tolist() == [7, 8, 9, -1, -1] and int(n) == 3


# Pieces a malformed response is made of: tags, digits, marks, spaces, the board's own words,
# the end of turn, padding and other special tokens.
POOL = sorted({
    *TOK.tag_ids.values(), TOK.eos_id, TOK.pad_id, TOK.unk_id, TOK.image_pad_id,
    *(TOK.encode(t)[0] for t in "0123456789(),|-"),
    *TOK.encode(" 1 2 , ( ) |"), *TOK.encode("\n"), *TOK.encode(" "),
    *TOK.encode(TRUTH), *TOK.encode("(0, 2) (0, 3)"),
})


@st.composite
def responses(draw):
    """A well-formed response with random edits, or a random sequence of pieces."""
    good = TOK.encode(text.response_text(TRUTH, "", "(0, 2) (0, 3)"))
    ids = list(good) if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(ids)))
        piece = draw(st.sampled_from(POOL))
        if op == "insert" or not ids:
            ids.insert(at, piece)
        elif op == "delete":
            del ids[min(at, len(ids) - 1)]
        else:
            ids[min(at, len(ids) - 1)] = piece
    return ids


@given(st.lists(responses(), min_size=4, max_size=4))
def test_device_and_host_agree_on_malformed_responses(rows):
    length = 96
    ids = np.full((4, length), TOK.pad_id, np.int32)
    for i, r in enumerate(rows):
        r = r[:length]
        ids[i, :len(r)] = r
    mask = jnp.asarray(np.arange(length)[None] < np.array([len(r) for r in rows])[:, None])
    both_paths(SWAP, batch_of(STATE, 4), jnp.asarray(ids), mask)


def test_reward_fn_compiles_once_per_shape():
    fn = jax.jit(R.RewardFn(SWAP, TOK).__call__)
    tokens, mask = tokenize([CASES["right"][0], CASES["empty"][0]], 120)
    fn(batch_of(STATE, 2), tokens, mask)
    before = fn._cache_size()
    fn(batch_of(STATE, 2), tokens[::-1], mask[::-1])
    assert fn._cache_size() == before


@pytest.mark.parametrize("game", sorted(jaxgym.list_games()))
def test_device_and_host_agree_on_every_game(game):
    """For each game: boards a few random moves into play, answered with the expert's move,
    a random action (legal or not) under another board's perception, and random pieces of the
    game's own text."""
    env = jaxgym.make(game, "easy")
    keys = jax.random.split(jax.random.key(11), 6)
    states = jax.jit(jax.vmap(env.reset))(keys)
    step, random_moves = jax.jit(jax.vmap(env.step)), jax.jit(jax.vmap(jaxgym.random_legal_action))
    for k in jax.random.split(jax.random.key(12), 3):
        states = step(states, random_moves(jax.random.split(k, 6), states.legal_action_mask))
    rng = np.random.default_rng(0)
    boards = np.asarray(states.board)
    expert = np.asarray(jax.jit(jax.vmap(env.expert_action))(states))
    rows = []
    for i, board in enumerate(boards):
        truth = text.describe_board(env, board)
        right = TOK.encode(text.response_text(truth, "", text.answer_text(env, expert[i])))
        move = text.answer_text(env, int(rng.integers(env.num_actions)))
        rows += [right, TOK.encode(text.response_text(text.describe_board(env, boards[i - 1]),
                                                       "", move)),
                 [right[j] for j in rng.integers(0, len(right), len(right) // 2)]]
    tokens, mask = pad_ids(rows)
    repeated = jax.tree.map(lambda x: jnp.repeat(x, 3, 0), states)
    got = both_paths(env, repeated, tokens, mask)
    assert float(got.perception[0::3].mean()) == 1.0 and float(got.format[0::3].mean()) == 1.0
    expert_legal = np.asarray(states.legal_action_mask)[np.arange(len(boards)), expert]
    np.testing.assert_array_equal(got.valid[0::3], expert_legal & ~np.asarray(states.done))
    perception_chars = jax.jit(R.RewardFn(env, TOK).perception_chars)
    for board in boards:  # the device's perception text is the host's, character for character
        chars, n = perception_chars(jnp.asarray(board))
        assert "".join(map(chr, np.asarray(chars)[: int(n)])) == text.describe_board(env, board)


def test_perception_share_gives_partial_credit_place_by_place():
    share = text.perception_share
    assert share("<perception>abcd</perception>", "abcd") == 1.0
    assert share("<perception> abxd \n</perception>", "abcd") == 0.75  # stripped first
    assert share("<perception>ab</perception>", "abcd") == 0.5
    assert share("<perception>xabcd</perception>", "abcd") == 0.0  # one place off: nothing
    assert share("abcd", "abcd") == share(None, "abcd") == 0.0  # no block
    # on the device as on the host (both_paths), for a partly read board
    half = "\n".join(TRUTH.split("\n")[:2])  # the first two of four rows
    tokens, mask = tokenize([text.response_text(TRUTH, "", "(0, 2) (0, 3)"),
                             text.response_text(half, "", "(0, 2) (0, 3)"), "empty"])
    got = both_paths(SWAP, batch_of(STATE, 3), tokens, mask)
    np.testing.assert_allclose(got.perception_share, [1.0, share(
        text.response_text(half, "", ""), TRUTH), 0.0])
    assert 0.4 < float(got.perception_share[1]) < 0.6 and float(got.perception[1]) == 0.0

"""Prompts, perception text, answer parsing and the format check."""

import jax
import numpy as np
import pytest

import jaxgym
from jaxgym import text

ENV = jaxgym.make("swap", rows=4, cols=5, colours=3, shapes=2)


def answer(body: str) -> str:
    return text.response_text("board", "thinking", body)


def test_prompt_names_the_board_and_the_answer_format():
    prompt = text.prompt(ENV)
    assert "4x5" in prompt and "(row, column) (row, column)" in prompt
    for tag in text.TAGS:
        assert f"<{tag}>" in prompt


def test_brief_prompt_is_the_first_sentence():
    for game in jaxgym.list_games():
        env = jaxgym.make(game, "easy")
        brief = text.prompt(env, "brief")
        assert text.prompt(env).startswith(brief[:-1]) and brief.endswith("grid.")
        assert "<answer>" not in brief
    with pytest.raises(ValueError, match="prompt style"):
        text.prompt(ENV, "short")


def test_perception_lists_every_cell_by_name(key):
    board = np.array([[0, 0, 1, 2, 3], [5, 4, 0, 1, 2], [2, 3, 4, 5, 0], [1, 2, 3, 4, 5]])
    state = ENV.from_board(board, key)
    np.testing.assert_array_equal(state.board, board)
    lines = text.perception(ENV, state).split("\n")
    assert len(lines) == 4
    assert lines[0] == "Red circle | Red circle | Red square | Green circle | Green square"
    assert lines[1].split(" | ")[0] == "Blue square"
    with pytest.raises(ValueError, match="one board"):
        text.perception(ENV, jax.vmap(ENV.reset)(jax.random.split(key, 2)))


@pytest.mark.parametrize(
    "body, cells",
    [
        ("(0, 1) (0, 2)", (0, 1, 0, 2)),
        ("(0,1)(0,2)", (0, 1, 0, 2)),
        ("  ( 2 , 3 ) , ( 3 , 3 )  ", (2, 3, 3, 3)),
        ("(3, 4) (2, 4)", (3, 4, 2, 4)),
        ("(1, 1)\n(1, 0)", (1, 1, 1, 0)),
        ("(001, 1) (1, 2)", (1, 1, 1, 2)),
    ],
)
def test_well_formed_answers_parse_to_their_move(body, cells):
    action = text.parse_answer(ENV, answer(body))
    assert action == int(ENV.encode_action(*cells)) != jaxgym.INVALID_ACTION
    assert text.parse_answer(ENV, f"<answer>{body}</answer>") == action  # tags for the rest optional
    r1, c1, r2, c2 = (int(x) for x in ENV.decode_action(action))
    assert {(r1, c1), (r2, c2)} == {cells[:2], cells[2:]}


MALFORMED = [
    "",
    "(0, 1) (0, 2)",  # no tags
    "<answer></answer>",
    "<answer>(0, 1)</answer>",
    "<answer>(0, 1) (0, 2) (0, 3)</answer>",
    "<answer>0 1 0 2</answer>",
    "<answer>(0, 1) (0, 2</answer>",
    "<answer>[0, 1] [0, 2]</answer>",
    "<answer>(0; 1) (0; 2)</answer>",
    "<answer>(a, b) (c, d)</answer>",
    "<answer>(-1, 0) (0, 0)</answer>",
    "<answer>(0, -1) (0, 0)</answer>",
    "<answer>(+0, 1) (0, 2)</answer>",
    "<answer>(0.0, 1) (0, 2)</answer>",
    "<answer>(4, 0) (3, 0)</answer>",  # row 4 is off a 4-row board
    "<answer>(0, 5) (0, 4)</answer>",  # column 5 is off a 5-column board
    "<answer>(99999, 0) (0, 0)</answer>",
    "<answer>(" + "9" * 5000 + ", 0) (0, 0)</answer>",
    "<answer>(０, 1) (0, 2)</answer>",  # full-width digit
    "<answer>(٠, 1) (0, 2)</answer>",  # Arabic-Indic digit
    "<answer>(0, 0) (0, 2)</answer>",  # not neighbours
    "<answer>(0, 0) (1, 1)</answer>",  # diagonal
    "<answer>(0, 0) (0, 0)</answer>",  # same cell
    "<answer>(0, 1) (0, 2)</answer><answer>(1, 1) (1, 2)</answer>",  # two answers
    "<answer>(0, 1) (0, 2)",  # unclosed
    "(0, 1) (0, 2)</answer>",  # unopened
    "</answer>(0, 1) (0, 2)<answer>",  # reversed tags
    "<ANSWER>(0, 1) (0, 2)</ANSWER>",
    "<answer>(0, 1) and (0, 2)</answer>",
    "<answer>(0, 1) (0, 2) because</answer>",
    "<answer>up</answer>",
    "<answer>\x00(0, 1) (0, 2)</answer>",
    None,
    b"<answer>(0, 1) (0, 2)</answer>",
    42,
    ["<answer>(0, 1) (0, 2)</answer>"],
]


@pytest.mark.parametrize("response", MALFORMED)
def test_malformed_answers_are_invalid_and_never_raise(response):
    assert text.parse_answer(ENV, response) == jaxgym.INVALID_ACTION


def test_an_invalid_parse_steps_as_an_invalid_move(key):
    state = ENV.reset(key)
    after = ENV.step(state, text.parse_answer(ENV, "garbage"))
    np.testing.assert_array_equal(after.board, state.board)
    assert float(after.reward) == -1.0


@pytest.mark.parametrize(
    "response, ok",
    [
        ("<perception>a</perception><think>b</think><answer>c</answer>", True),
        (" <perception>\na\n</perception>\n<think></think> <answer>c</answer>\n", True),
        ("<perception>a</perception><answer>c</answer>", False),
        ("<think>b</think><perception>a</perception><answer>c</answer>", False),
        ("<perception>a</perception><think>b</think><answer>c</answer> trailing", False),
        ("<perception>a<think>b</think></perception><answer>c</answer>", False),
        ("<perception>a</perception><think>b</think><answer>c</answer><answer>d</answer>", False),
        ("<perception>a</perception><think>b<answer>c</answer>", False),
        ("", False),
        (None, False),
        (17, False),
    ],
)
def test_format_ok(response, ok):
    assert text.format_ok(response) is ok


def test_answer_text_round_trips_through_the_parser():
    for action in range(ENV.num_actions):
        response = answer(text.answer_text(ENV, action))
        assert text.parse_answer(ENV, response) == action
        assert text.format_ok(response)
    with pytest.raises(ValueError, match="out of range"):
        text.answer_text(ENV, -1)

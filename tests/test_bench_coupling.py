"""bench.coupling on written responses: what the think restates, and whether it is the block."""

import jax
import numpy as np

import jaxgym
from bench import coupling
from policy import episodes


def responses(n: int = 4):
    env = jaxgym.make("swap", "easy")
    states = episodes.deal(env, jax.random.key(5), n, 1)
    return env, np.asarray(states.board), episodes.cold_start_texts(env, states, restate=True)


def test_the_experts_responses_restate_their_exact_perception():
    env, boards, texts = responses()
    valid = np.array([True, True, False, True])
    report = coupling.coupling(env, boards, texts, valid)
    assert report["perception_exact"] == report["restated_exact"] == 1.0
    assert report["perception_cells"] == report["restated_cells"] == 1.0
    assert report["restated_is_perception"] == 1.0
    assert report["valid_if_perception_exact"] == 0.75
    assert np.isnan(report["valid_if_perception_wrong"])  # no such board


def renamed_first_cell(env, board, text, restate_block: bool):
    """The response with the board's first cell misnamed in its block (the first name in the
    text), and with the restated board following the block if `restate_block`."""
    names = jaxgym.text.value_names(env)
    right = names[int(board[0, 0]) + 1]
    other = next(n for n in names[1:] if n not in (right, "?"))
    text = text.replace(right, other, 1)
    if restate_block:
        wrong = board.copy()
        wrong[0, 0] = names.index(other) - 1
        text = text.replace(episodes.restated_board(board), episodes.restated_board(wrong))
    return text


def test_a_block_with_one_wrong_cell_and_a_think_that_copies_it_or_not():
    env, boards, texts = responses(2)
    texts = [renamed_first_cell(env, boards[0], texts[0], restate_block=True),
             renamed_first_cell(env, boards[1], texts[1], restate_block=False)]
    report = coupling.coupling(env, boards, texts, np.array([False, True]))
    assert report["perception_exact"] == 0.0
    assert report["perception_cells"] == 15 / 16
    assert report["restated_exact"] == 0.5 and report["restated_cells"] == (15 + 16) / 32
    assert report["restated_is_perception"] == 0.5
    assert report["valid_if_perception_wrong"] == 0.5


def test_a_response_without_a_restated_board():
    env, boards, texts = responses(1)
    text = texts[0].replace(episodes.restated_board(boards[0]) + " ", "")
    report = coupling.coupling(env, boards, [text], np.array([True]))
    assert report["restated_exact"] == 0.0 and report["restated_is_perception"] == 0.0
    assert report["perception_exact"] == 1.0

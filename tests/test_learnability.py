"""bench.learnability: the decoder probe runs with constant tokens around the cells, and the
targets of its variants say what they claim."""

import jax
import numpy as np

import jaxgym
from bench import learnability
from jaxgym import text


def test_decoder_probe_reports_a_valid_move_rate():
    rows = learnability.run_decoder("embed-0.33 (fixed)", steps=2, eval_every=2, seed=0,
                                    prefix=3, between=2)
    assert [r["step"] for r in rows] == [2]
    assert 0.0 <= rows[0]["valid_move_rate"] <= 1.0
    assert (rows[0]["prefix"], rows[0]["between"]) == (3, 2)
    assert "| embed-0.33 (fixed) | 0 | " in learnability.table(rows, "setting")


def test_variant_targets():
    env = jaxgym.make("swap", preset="easy")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 2))
    actions = jax.vmap(env.expert_action)(states)
    full = learnability.target_texts(env, states, actions, {"default"})
    assert full[0] == text.response_text(text.describe_board(env, states.board[0]),
                                         text.rationale(env, states.board[0], actions[0]),
                                         text.answer_text(env, actions[0]))
    r1, c1, r2, c2 = (int(x) for x in env.decode_action(actions[0]))
    first = learnability.target_texts(env, states, actions, {"coordinates-first"})[0]
    assert f"<think>Swap ({r1}, {c1}) with ({r2}, {c2}):" in first
    only = learnability.target_texts(env, states, actions, {"answer-only"})[0]
    assert only.startswith("<perception></perception><think></think><answer>")
    picks = np.asarray(learnability.random_valid_actions(jax.random.key(0),
                                                         states.legal_action_mask))
    assert np.asarray(states.legal_action_mask)[np.arange(2), picks].all()

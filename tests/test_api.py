"""Conformance: every registered game, at its easy preset, through the same checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
import render
from jaxgym import text

GAMES = sorted(jaxgym.list_games())


@pytest.fixture(params=GAMES)
def env(request):
    return jaxgym.make(request.param, preset="easy", tile_px=12)


def test_state_fields_shapes_and_dtypes(env, key):
    state = env.reset(key)
    assert state.board.shape == env.board_shape and state.board.dtype == jnp.int32
    assert state.legal_action_mask.shape == (env.num_actions,) and state.legal_action_mask.dtype == bool
    assert state.reward.dtype == jnp.float32 and state.reward.shape == ()
    assert state.step_count.dtype == jnp.int32
    assert state.terminated.dtype == bool and state.truncated.dtype == bool
    assert bool(state.legal_action_mask.any()) != bool(state.terminated)


def test_legal_moves_are_valid_and_illegal_ones_are_not(env, key):
    state = env.reset(key)
    step = jax.jit(env.step)
    legal = np.flatnonzero(np.asarray(state.legal_action_mask))
    illegal = np.flatnonzero(~np.asarray(state.legal_action_mask))
    for action in legal[:5]:
        assert float(step(state, action).reward) >= 0
    for action in list(illegal[:5]) + [jaxgym.INVALID_ACTION]:
        after = step(state, action)
        assert float(after.reward) == -1.0
        np.testing.assert_array_equal(after.board, state.board)


def test_a_batched_rollout_is_deterministic_finite_and_compiles_once(env):
    traces = []

    @jax.jit
    def rollout(key):
        traces.append(1)
        states = jax.vmap(env.reset)(jax.random.split(key, 16))

        def one(states, key):
            actions = jax.vmap(env.expert_action)(states)
            states = jax.vmap(env.step)(states, actions)
            return states, (states.reward, render.frames(env, states).mean())

        return jax.lax.scan(one, states, jax.random.split(key, 4))

    first = rollout(jax.random.key(1))
    again = rollout(jax.random.key(1))
    other = rollout(jax.random.key(2))
    assert len(traces) == 1
    np.testing.assert_array_equal(first[0].board, again[0].board)
    np.testing.assert_array_equal(first[1][0], again[1][0])
    assert not np.array_equal(first[0].board, other[0].board)
    assert np.isfinite(np.asarray(first[1][0])).all()


def test_expert_is_legal_and_its_answer_parses_back(env, key):
    states = jax.vmap(env.reset)(jax.random.split(key, 8))
    experts = jax.vmap(env.expert_action)(states)
    assert np.asarray(jax.vmap(jaxgym.is_legal)(states.legal_action_mask, experts)).all()
    response = text.response_text("x", "y", text.answer_text(env, experts[0]))
    assert text.parse_answer(env, response) == int(experts[0])


def test_same_cell_value_same_pixels_different_values_different_pixels(env, key):
    states = jax.vmap(env.reset)(jax.random.split(key, 4))
    frames = np.asarray(jax.jit(lambda s: render.frames(env, s))(states))
    assert frames.shape == (4, *render.frame_shape(env)) and frames.dtype == np.uint8
    rows, cols = env.board_shape
    px = env.tile_px
    pictures: dict[int, np.ndarray] = {}
    for board, frame in zip(np.asarray(states.board), frames):
        for r in range(rows):
            for c in range(cols):
                cell = frame[r * px : (r + 1) * px, c * px : (c + 1) * px]
                value = int(board[r, c])
                if value in pictures:
                    np.testing.assert_array_equal(cell, pictures[value])
                pictures[value] = cell
    values = sorted(pictures)
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert not np.array_equal(pictures[a], pictures[b]), (a, b)


MALFORMED = [None, 3, b"<answer>1</answer>", "", "<answer></answer>", "<answer>(0, 0)</answer>",
             "<answer>(0, 0) (0, 1)</answer><answer>(0, 0) (0, 1)</answer>", "<answer>-1</answer>",
             "<answer>(99999, 0) (0, 0)</answer>", "<answer>up</answer>", "</answer>(0, 0) (0, 1)<answer>",
             "<answer>\u0661</answer>", "<answer>(0, 0) (0, 1)" + "x" * 10_000 + "</answer>"]


@pytest.mark.parametrize("response", MALFORMED)
def test_malformed_answers_never_raise(env, response):
    assert text.parse_answer(env, response) == jaxgym.INVALID_ACTION
    assert text.format_ok(response) is False


def test_jit_vmap_and_plain_agree(env, key):
    keys = jax.random.split(key, 2)
    plain = [env.reset(k) for k in keys]
    batched = jax.jit(jax.vmap(env.reset))(keys)
    actions = [env.expert_action(s) for s in plain]
    afters = []
    for i, (state, action) in enumerate(zip(plain, actions)):
        np.testing.assert_array_equal(batched.board[i], state.board)
        after = env.step(state, action)  # eager: every op on its own
        afters.append(after)
        jitted = jax.jit(env.step)(state, action)
        for field in ("board", "reward", "terminated", "legal_action_mask"):
            np.testing.assert_array_equal(getattr(jitted, field), getattr(after, field))
        np.testing.assert_array_equal(jax.random.key_data(jitted.key), jax.random.key_data(after.key))
    stepped = jax.jit(jax.vmap(env.step))(batched, jnp.stack(actions))
    for i, after in enumerate(afters):
        np.testing.assert_array_equal(stepped.board[i], after.board)

"""Conformance: every registered game, at every preset, through `jaxgym.testing` (the checks a
third-party game can run too), plus the pixels of every game at its easy preset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
import render
from jaxgym import testing
from jaxgym.games import swap

GAMES = sorted(jaxgym.list_games())


@pytest.mark.parametrize("game", GAMES)
def test_every_preset_keeps_the_contract(game):
    testing.check_game(game, played=("easy",))


class ExpertPlaysIllegally(swap.Swap):
    def expert_action(self, state):
        return jnp.int32(jaxgym.INVALID_ACTION)


class IllegalMovesScore(swap.Swap):
    def _step(self, state, action):
        after = super()._step(state, action)
        return after.replace(reward=jnp.maximum(after.reward, 0.0))


@pytest.mark.parametrize("broken, message", [(ExpertPlaysIllegally, "expert"),
                                             (IllegalMovesScore, "did not score -1")])
def test_the_checks_catch_a_broken_game(broken, message):
    with pytest.raises(AssertionError, match=message):
        testing.check_env(broken(**jaxgym.make("swap", preset="easy").__dict__))


@pytest.fixture(params=GAMES)
def env(request):
    return jaxgym.make(request.param, preset="easy", tile_px=12)


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

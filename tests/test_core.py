"""The registry, difficulty validation, shared step bookkeeping and the auto-reset wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym


def test_list_games_and_presets():
    games = jaxgym.list_games()
    assert "swap" in games
    assert set(games["swap"]) == {"easy", "paper", "hard"}
    paper = jaxgym.make("swap", preset="paper")
    assert (paper.rows, paper.cols, paper.num_tile_types) == (8, 8, 12)
    assert paper == jaxgym.make("swap")
    easy = jaxgym.make("swap", preset="easy", rows=5)  # explicit knobs win over the preset
    assert (easy.rows, easy.cols) == (5, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rows=2, cols=2), "run of 3"),
        (dict(rows=1, cols=8), r"\[2, 32\]"),
        (dict(rows=40), r"\[2, 32\]"),
        (dict(colours=1, shapes=1), "at least 2 tile types"),
        (dict(colours=11), "colours"),
        (dict(shapes=7), "shapes"),
        (dict(rows=3.5), "int"),
        (dict(tile_px=4), "tile_px"),
        (dict(max_steps=-1), "max_steps"),
        (dict(max_cascade_rounds=0), "max_cascade_rounds"),
        (dict(rows=2, cols=5, colours=10, shapes=6), "could not deal"),
        (dict(speed=3), "no setting"),
    ],
)
def test_impossible_difficulty_raises_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        jaxgym.make("swap", **kwargs)


def test_unknown_game_and_preset():
    with pytest.raises(ValueError, match="unknown game"):
        jaxgym.make("chess")
    with pytest.raises(ValueError, match="unknown preset"):
        jaxgym.make("swap", preset="nightmare")


def test_knobs_list_constructor_arguments():
    assert {"rows", "cols", "colours", "shapes", "tile_px", "max_steps"} <= set(jaxgym.knobs("swap"))


def test_truncation_and_stepping_a_finished_episode(key):
    env = jaxgym.make("swap", preset="easy", max_steps=2)
    state = env.reset(key)
    for _ in range(2):
        state = env.step(state, env.expert_action(state))
    assert bool(state.truncated) and int(state.step_count) == 2
    after = env.step(state, env.expert_action(state))
    np.testing.assert_array_equal(after.board, state.board)
    assert float(after.reward) == 0.0 and int(after.step_count) == 2


def test_random_legal_action_is_uniform_over_legal_moves():
    mask = jnp.array([False, True, False, True, True, False])
    picks = jax.vmap(jaxgym.random_legal_action, (0, None))(jax.random.split(jax.random.key(0), 3000), mask)
    counts = np.bincount(np.asarray(picks), minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    assert all(abs(c - 1000) < 120 for c in counts[[1, 3, 4]])
    assert int(jaxgym.random_legal_action(jax.random.key(0), jnp.zeros(6, bool))) == jaxgym.INVALID_ACTION


def test_random_legal_action_is_uniform_over_a_mask_of_many_blocks():
    # Shisen-Sho-sized masks are sampled block by block: blocks with one legal action and a
    # block with many must still give every legal action the same share
    n = 5 * jaxgym.core.SAMPLE_BLOCK + 17
    legal = np.array([3, 300, 301, 302, 303, n - 1])
    mask = jnp.zeros(n, bool).at[legal].set(True)
    picks = np.asarray(jax.vmap(jaxgym.random_legal_action, (0, None))(
        jax.random.split(jax.random.key(1), 6000), mask))
    counts = np.bincount(picks, minlength=n)
    assert counts.sum() == counts[legal].sum() == 6000
    assert all(abs(c - 1000) < 120 for c in counts[legal])
    assert int(jaxgym.random_legal_action(jax.random.key(0), jnp.zeros(n, bool))) == jaxgym.INVALID_ACTION


@pytest.mark.parametrize("batched", [True, False])
def test_auto_reset_deals_fresh_boards_only_when_an_episode_ends(key, batched):
    env = jaxgym.make("swap", preset="easy", max_steps=3)
    wrapped = jaxgym.AutoReset(env)
    if batched:
        state = jax.vmap(wrapped.reset)(jax.random.split(key, 4))
    else:
        state = wrapped.reset(key)
    step = jax.jit(wrapped.step)
    expert = jax.vmap(env.expert_action) if batched else env.expert_action
    history = []
    for _ in range(7):
        state = step(state, expert(state))
        history.append(state)
    done = [np.asarray(s.truncated) for s in history]
    counts = [np.asarray(s.step_count) for s in history]
    # Moves 3 and 6 end an episode: the flags say so, and the board is already a fresh one.
    for i in range(7):
        assert np.all(done[i] == (i in (2, 5)))
        assert np.all(counts[i] == (0 if i in (2, 5) else (i % 3) + 1))
        assert np.all(np.asarray(history[i].reward) > 0)  # the expert scored on every move

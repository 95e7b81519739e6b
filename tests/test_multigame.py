"""Mixed-game batches: one jit call steps every game, and each board behaves as its own game."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgym
import render
from jaxgym import multigame, text

COUNTS = {"swap": 3, "shisensho": 2, "2048": 2, "shisensho-images": 2}


@pytest.fixture(scope="module")
def mix():
    return multigame.make_mix(COUNTS, preset="easy")


@pytest.fixture(scope="module")
def fresh(mix):
    """Fresh boards of the module's mix (dealt once: compiling four deals is the slow part)."""
    return jax.jit(mix.reset)(jax.random.key(0))


def test_layout(mix):
    assert mix.batch_size == 9
    assert mix.labels == tuple(COUNTS)
    np.testing.assert_array_equal(mix.game_ids, [0, 0, 0, 1, 1, 2, 2, 3, 3])
    assert len(mix.prompts()) == 9 and mix.prompts()[3] == text.prompt(mix.envs[1])


def test_one_jit_call_steps_every_game_as_if_alone(mix, fresh):
    traces = []

    @jax.jit
    def play(states, key):
        traces.append(1)
        actions = mix.random_actions(key, states)
        return actions, mix.step(states, actions), render.mix_frames(mix, states)

    own_steps = [jax.jit(jax.vmap(env.step)) for env in mix.envs]
    states = fresh
    for k in jax.random.split(jax.random.key(3), 3):
        actions, moved, _ = play(states, k)
        for i, (own_step, state, after) in enumerate(zip(own_steps, states, moved)):
            own = own_step(state, actions[mix.game_ids == i])
            for field in ("board", "reward", "terminated", "legal_action_mask", "step_count"):
                np.testing.assert_array_equal(getattr(after, field), getattr(own, field))
        states = moved
    assert len(traces) == 1


def test_frames_share_one_canvas_and_keep_each_game_picture(key):
    small = jaxgym.make("swap", preset="easy", tile_px=16)  # 64 x 64
    wide = jaxgym.make("shisensho", rows=4, cols=8, colours=2, shapes=2, copies=8, tile_px=16)  # 64 x 128
    mix = multigame.MultiGame(envs=(small, wide), counts=(2, 1))
    states = jax.jit(mix.reset)(key)
    frames = np.asarray(render.draw_mix(mix, states, canvas=(128, 260)))
    assert frames.shape == (3, 128, 260, 3) and frames.dtype == np.uint8
    # Both are redrawn with 32-pixel cells: the wide board is 128 x 256, centred with 2 white
    # columns each side; the square one is 128 x 128, centred with 66 white columns each side.
    big = lambda env: dataclasses.replace(env, tile_px=32)
    np.testing.assert_array_equal(frames[2:, :, 2:-2], render.frames(big(wide), states[1]))
    np.testing.assert_array_equal(frames[:2, :, 66:-66], render.frames(big(small), states[0]))
    assert (frames[:2, :, :66] == render.canvas.BACKGROUND).all() and (frames[:, :, -2:] == 255).all()
    unscaled = multigame.MultiGame(envs=(wide,), counts=(2,))
    assert render.canvas_shape(unscaled.envs) == (64, 128)
    assert render.canvas.fitted(wide, (64, 128)) is wide
    states = jax.jit(unscaled.reset)(key)
    np.testing.assert_array_equal(render.mix_frames(unscaled, states), render.frames(wide, states[0]))
    with pytest.raises(ValueError, match="too small"):
        render.mix_frames(unscaled, states, canvas=(32, 32))
    with pytest.raises(ValueError, match="canvas must be"):
        render.mix_frames(unscaled, states, canvas=(32,))


def test_text_is_routed_to_each_board_game(mix, fresh):
    states = fresh
    perceptions = mix.perceptions(states)
    assert perceptions[0] == text.perception(mix.envs[0], jax.tree.map(lambda x: x[0], states[0]))
    assert perceptions[5] == text.perception(mix.envs[2], jax.tree.map(lambda x: x[0], states[2]))
    assert "|" in perceptions[5] and " | " not in perceptions[5]  # 2048's own format
    experts = np.asarray(jax.jit(mix.expert_actions)(states))
    responses = [
        text.response_text("p", "t", text.answer_text(mix.envs[g], a)) for g, a in zip(mix.game_ids, experts)
    ]
    np.testing.assert_array_equal(mix.parse_answers(responses), experts)
    responses[5] = "<answer>(0, 0) (0, 1)</answer>"  # a pair answer to 2048 is malformed
    assert mix.parse_answers(responses)[5] == jaxgym.INVALID_ACTION
    assert np.asarray(jax.jit(mix.legal)(states, experts)).all()


def test_metrics_are_per_game(mix, fresh):
    states = fresh
    actions = np.array(jax.jit(mix.expert_actions)(states))
    actions[0] = jaxgym.INVALID_ACTION  # one invalid Swap move out of three
    after = jax.jit(mix.step)(states, actions)
    metrics = jax.device_get(jax.jit(mix.metrics)(after))
    assert set(metrics) == set(COUNTS)
    assert metrics["swap"]["valid_move_rate"] == pytest.approx(2 / 3)
    assert metrics["shisensho"]["valid_move_rate"] == 1.0
    assert metrics["swap"]["mean_reward"] == pytest.approx(float(np.mean(after[0].reward)))
    np.testing.assert_array_equal(mix.field(after, "reward")[:3], after[0].reward)


def test_auto_reset_deals_fresh_boards_per_game(key):
    mix = multigame.MultiGame(
        envs=(jaxgym.make("swap", preset="easy", max_steps=1), jaxgym.make("2048", preset="easy", max_steps=1)),
        counts=(2, 2), auto_reset=True,
    )
    states = jax.jit(mix.reset)(key)
    after = jax.jit(lambda s: mix.step(s, mix.expert_actions(s)))(states)
    assert np.asarray(mix.field(after, "truncated")).all()  # the move ended every episode ...
    assert (np.asarray(mix.field(after, "step_count")) == 0).all()  # ... and fresh boards wait


def test_bad_input_raises_clear_errors(mix):
    with pytest.raises(ValueError, match="one count per game"):
        multigame.MultiGame(envs=(jaxgym.make("swap"),), counts=(1, 2))
    with pytest.raises(ValueError, match="counts"):
        multigame.make_mix({"swap": 0})
    with pytest.raises(ValueError, match="does not split evenly over the 2 games"):
        multigame.MultiGame.split_evenly(mix.envs[:2], 3)
    with pytest.raises(ValueError, match="actions must have shape"):
        mix.step(None, jnp.zeros(3, jnp.int32))  # checked before the states are looked at
    with pytest.raises(ValueError, match="one response per board"):
        mix.parse_answers(["x"])


def test_reset_can_advance_boards_by_random_moves(key):
    mix = multigame.MultiGame(envs=(jaxgym.make("swap", preset="easy"),
                                    jaxgym.make("2048", preset="easy")), counts=(6, 6))
    moved = jax.jit(lambda k: mix.reset(k, max_random_moves=4))(key)
    for state in moved:  # advanced, but never into a finished episode, and counted from 0
        assert (np.asarray(state.step_count) == 0).all() and not np.asarray(state.done).any()
    tiles = (np.asarray(moved[1].board) > 0).sum(axis=(1, 2))
    assert tiles.min() >= 2 and tiles.max() > 2  # a fresh 2048 board holds two tiles

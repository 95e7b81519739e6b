"""jaxgym.compat: the paper's sandbox interface, driven as its trainer drives it, and the
gymnasium environments, checked by gymnasium's own env checker."""

import jax
import numpy as np
import pytest
from PIL import Image

import jaxgym
from jaxgym import text
from jaxgym.compat import vlmgym

gymnasium = pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env  # noqa: E402

from jaxgym.compat import gymnasium as jaxgym_gym  # noqa: E402


def expert_responses(sandbox):
    states = sandbox.states
    actions = np.asarray(jax.jit(jax.vmap(sandbox.env.expert_action))(states))
    return [text.response_text(text.describe_board(sandbox.env, b), "",
                               text.answer_text(sandbox.env, a))
            for b, a in zip(np.asarray(states.board), actions)]


def test_the_trainer_loop_reset_images_n_responses_rewards():
    manager = vlmgym.SandboxMananger([vlmgym.GameSandbox("swap", 3, screen_size=(96, 80)),
                                      vlmgym.GameSandbox("2048", 2, seed=1)])
    manager.reset_sandbox()
    manager.random_step_sandbox([1, 2])
    images, prompts = manager.get_image_prompt_batch()
    assert len(images) == len(prompts) == 5 and all(isinstance(i, Image.Image) for i in images)
    assert images[0].size == (96, 80) and "Swap" in prompts[0] and "2048" in prompts[4]
    truths = manager.get_text_observation_batch()
    experts = [r for s in manager.sandbox_list for r in expert_responses(s)]
    assert manager.get_perception_reward_batch(experts) == [1] * 5
    assert manager.get_perception_reward_batch(["<perception>x</perception>"] * 5) == [0] * 5
    # n = 4 rollouts per board: the expert, a malformed reply, and 2048's four slides
    slides = [[experts[b] if b < 3 else text.response_text("", "", str(k)) for b in range(5)]
              for k in range(4)]
    rollouts = [experts, ["<answer>nonsense"] * 5, slides[1], slides[2]]
    rewards = manager.get_reward_batch_with_n_rollouts(rollouts, 4)
    assert manager.get_text_observation_batch() == truths  # the boards did not move
    assert all(r >= 0 for r in rewards[0][:3]) and rewards[1] == [-1.0] * 5
    # every rollout was scored on the same boards: each equals one step from them
    steps = {start: jax.jit(jax.vmap(s.env.step)) for s, start in zip(manager.sandbox_list, (0, 3))}
    for k, responses in enumerate(rollouts):
        for sandbox, start in zip(manager.sandbox_list, (0, 3)):
            n = sandbox.num_envs
            alone = steps[start](sandbox.states,
                                 jax.numpy.asarray(sandbox.parse_actions(responses[start:start + n])))
            np.testing.assert_array_equal(rewards[k][start:start + n], np.asarray(alone.reward))
    # and then one real step moves them
    assert manager.get_reward_batch(experts)[:3] == rewards[0][:3]
    assert manager.get_text_observation_batch()[:3] != truths[:3]
    with pytest.raises(ValueError, match="5 boards but 2 responses"):
        manager.get_reward_batch(["", ""])


def test_the_vector_env_steps_every_board_and_deals_ended_ones_afresh():
    envs = gymnasium.make_vec("jaxgym/Swap-v0", num_envs=4, vectorization_mode="vector_entry_point",
                              preset="easy", max_steps=2)
    frames, info = envs.reset(seed=3)
    again, _ = envs.reset(seed=3)
    np.testing.assert_array_equal(frames, again)  # the same seed deals the same boards
    assert frames.dtype == np.uint8 and frames.shape == envs.observation_space.shape
    assert info["legal_action_mask"].shape == (4, envs.single_action_space.n)
    assert "|" in info["perception"][0]
    actions = info["legal_action_mask"].argmax(1)
    frames, rewards, terminated, truncated, info = envs.step(actions)
    assert (rewards >= 0).all() and not (terminated | truncated).any()
    frames, rewards, terminated, truncated, info = envs.step(info["legal_action_mask"].argmax(1))
    assert truncated.all() and info["final_obs"].shape == frames.shape  # max_steps = 2
    assert not np.array_equal(info["final_obs"], frames)  # fresh boards came in
    with pytest.raises(ValueError, match="4 integers"):
        envs.step(np.zeros(3, int))
    envs.close()


@pytest.mark.parametrize("game", sorted(jaxgym.list_games()))
def test_gymnasiums_env_checker_passes(game):
    env = gymnasium.make(jaxgym_gym.env_id(game), preset="easy").unwrapped
    check_env(env, skip_render_check=True)
    frame, _ = env.reset(seed=0)
    assert env.observation_space.contains(frame)

"""The sandbox interface the paper's trainer (its EasyR1 fork) calls, backed by batched jaxgym
games: a user of that trainer changes one import.

    from jaxgym.compat.vlmgym import GameSandbox, SandboxManager
    manager = SandboxManager([GameSandbox("swap", num_envs=8), GameSandbox("2048", num_envs=8)])
    images, prompts = manager.get_image_prompt_batch()       # PIL images, prompt strings
    rewards = manager.get_reward_batch(responses)             # steps every board once
    rewards = manager.get_reward_batch_with_n_rollouts(rollouts, n)  # n responses per board

Each sandbox is one game's batch of boards (one jaxgym state, stepped by one jitted call).
A response is parsed by the game's own parser (`jaxgym.text.parse_answer`); a malformed one is
an invalid move and gets the game's reward for it (-1). A board whose episode ends is dealt
afresh, as a gymnasium vector env does. `get_reward_batch_with_n_rollouts` steps a copy of
every board per rollout, so all n responses to a board are scored on that same board; the
boards themselves do not move (the original restores only `env.board`, which for 2048 leaves
the rest of a board's state moved between rollouts).

`get_perception_reward_batch` is 1 where the response's <perception> block is exactly the
board's description (`jaxgym.text.perception_ok`); the original only asks for the description
to appear somewhere in the response.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import jaxgym
import render
from jaxgym import text


class GameSandbox:
    """`num_envs` boards of one game. `screen_size`: (width, height) the images are resized to
    (bicubic), as the original does; None keeps the drawn size."""

    def __init__(self, game: str | jaxgym.Env, num_envs: int = 8, preset: str | None = "easy",
                 seed: int = 0, screen_size: tuple[int, int] | None = None,
                 prompt_style: str = "full"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env = game if isinstance(game, jaxgym.Env) else jaxgym.make(game, preset=preset)
        self.num_envs, self.screen_size = num_envs, screen_size
        self.num_actions = self.env.num_actions
        self.prompt = text.prompt(self.env, prompt_style)
        self._key = jax.random.key(seed)
        self._resets = jax.jit(jax.vmap(self.env.reset))
        self._step = jax.jit(jaxgym.AutoReset(self.env).step)
        self._draw = jax.jit(lambda states: render.frames(self.env, states))
        self._random = jax.jit(jax.vmap(jaxgym.random_legal_action))
        self.reset()

    def reset(self) -> None:
        """Fresh boards (a new deal at each call)."""
        self._key, key = jax.random.split(self._key)
        self.states = self._resets(jax.random.split(key, self.num_envs))

    def get_image_prompt_batch(self) -> tuple[list[Image.Image], list[str]]:
        """(one PIL image per board, the game's prompt for each)."""
        frames = np.asarray(self._draw(self.states))
        images = [Image.fromarray(f) for f in frames]
        if self.screen_size is not None:
            images = [i.resize(tuple(self.screen_size), Image.Resampling.BICUBIC) for i in images]
        return images, [self.prompt] * self.num_envs

    def get_text_observation(self) -> list[str]:
        """Each board's ground-truth perception text."""
        return [text.describe_board(self.env, b) for b in np.asarray(self.states.board)]

    def parse_actions(self, responses: Sequence) -> np.ndarray:
        if len(responses) != self.num_envs:
            raise ValueError(f"{self.num_envs} boards but {len(responses)} responses")
        return np.asarray([text.parse_answer(self.env, r) for r in responses], np.int32)

    def step_env_with_batched_response(self, responses: Sequence) -> np.ndarray:
        """Every board stepped by its response's move; float32[num_envs] the game's rewards."""
        self.states = self._step(self.states, jnp.asarray(self.parse_actions(responses)))
        return np.asarray(self.states.reward)

    def step_random(self) -> None:
        """Every board stepped by a uniformly random legal move."""
        self._key, key = jax.random.split(self._key)
        actions = self._random(jax.random.split(key, self.num_envs), self.states.legal_action_mask)
        self.states = self._step(self.states, actions)


class SandboxManager:
    """Several sandboxes (games) as one batch, boards in sandbox order."""

    def __init__(self, sandbox_list: Sequence[GameSandbox]):
        if not sandbox_list:
            raise ValueError("a SandboxManager needs at least one GameSandbox")
        self.sandbox_list = list(sandbox_list)

    @property
    def num_envs(self) -> int:
        return sum(s.num_envs for s in self.sandbox_list)

    def reset_sandbox(self) -> None:
        for sandbox in self.sandbox_list:
            sandbox.reset()

    def random_step_sandbox(self, num_steps_per_sandbox: Sequence[int]) -> None:
        """Sandbox i takes num_steps_per_sandbox[i] random legal moves."""
        for sandbox, steps in zip(self.sandbox_list, num_steps_per_sandbox, strict=True):
            for _ in range(steps):
                sandbox.step_random()

    def get_image_prompt_batch(self) -> tuple[list[Image.Image], list[str]]:
        images, prompts = [], []
        for sandbox in self.sandbox_list:
            i, p = sandbox.get_image_prompt_batch()
            images += i
            prompts += p
        return images, prompts

    def get_text_observation_batch(self) -> list[str]:
        return [t for sandbox in self.sandbox_list for t in sandbox.get_text_observation()]

    def get_reward_batch(self, responses: Sequence) -> list[float]:
        """Every board stepped by its response (board order); the game rewards."""
        if len(responses) != self.num_envs:
            raise ValueError(f"{self.num_envs} boards but {len(responses)} responses")
        rewards, start = [], 0
        for sandbox in self.sandbox_list:
            rewards += sandbox.step_env_with_batched_response(
                responses[start:start + sandbox.num_envs]).tolist()
            start += sandbox.num_envs
        return rewards

    def get_reward_batch_with_n_rollouts(self, rollouts: Sequence[Sequence], n: int
                                         ) -> list[list[float]]:
        """rollouts[k][b]: the k-th response to board b. Each rollout is scored on a copy of
        the current boards; returns rewards[k][b]. The boards do not move."""
        if len(rollouts) != n:
            raise ValueError(f"n = {n} but {len(rollouts)} rollouts")
        saved = [(s.states, s._key) for s in self.sandbox_list]
        rewards = []
        for responses in rollouts:
            rewards.append(self.get_reward_batch(responses))
            for sandbox, (states, key) in zip(self.sandbox_list, saved):
                sandbox.states, sandbox._key = states, key
        return rewards

    def get_perception_reward_batch(self, responses: Sequence) -> list[int]:
        """1 where the response's <perception> block is exactly its board's description."""
        truths = self.get_text_observation_batch()
        if len(responses) != len(truths):
            raise ValueError(f"{len(truths)} boards but {len(responses)} responses")
        return [int(text.perception_ok(r, t)) for r, t in zip(responses, truths)]


SandboxMananger = SandboxManager  # the original's spelling, so that its callers run unchanged

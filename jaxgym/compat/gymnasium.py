"""jaxgym's games as `gymnasium` environments (`pip install -e ".[gym]"`).

    import gymnasium as gym
    import jaxgym.compat.gymnasium  # registers jaxgym/Swap-v0, Shisensho-v0, ShisenshoImages-v0, 2048-v0
    envs = gym.make_vec("jaxgym/Swap-v0", num_envs=1024, vectorization_mode="vector_entry_point")
    frames, info = envs.reset(seed=0)        # uint8[1024, H, W, 3]
    frames, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    env = gym.make("jaxgym/Swap-v0", preset="easy")   # one board (gymnasium's env checker)

The vector env is one batch on the device: every board moves in one jitted call, and the
frames come back as one uint8 array. Actions are the game's integer action ids. `info` holds
"perception" (each board's ground-truth text) and "legal_action_mask" (bool[num_envs,
num_actions]). A board whose episode ends is dealt afresh in the same step (gymnasium's
`AutoresetMode.SAME_STEP`): the step returns the fresh board, and `info["final_obs"]` the
finished one. Keyword arguments are `jaxgym.make`'s (preset, rows, ...).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

import jaxgym
import render
from jaxgym import text


def env_id(game: str) -> str:
    """The gymnasium id of a registered game: "swap" -> "jaxgym/Swap-v0",
    "shisensho-images" -> "jaxgym/ShisenshoImages-v0"."""
    return "jaxgym/" + game.title().replace("-", "") + "-v0"


class _Boards:
    """The jitted functions of one game over a batch of `num_envs` boards."""

    def __init__(self, game: str, num_envs: int, options: dict):
        self.env = jaxgym.make(game, **{"preset": "easy", **options})
        env = self.env
        self.num_envs = num_envs
        self.frame_shape = render.frame_shape(env)
        self.resets = jax.jit(lambda key: jax.vmap(env.reset)(jax.random.split(key, num_envs)))
        self.draw = jax.jit(lambda states: render.frames(env, states))

        self.step = jax.jit(jaxgym.AutoReset(env).step_and_final)  # (next, finished)

    def info(self, states) -> dict[str, Any]:
        perception = np.array([text.describe_board(self.env, b)
                               for b in np.asarray(states.board)], dtype=object)
        every = np.ones(self.num_envs, bool)
        return {"perception": perception, "_perception": every,
                "legal_action_mask": np.asarray(states.legal_action_mask),
                "_legal_action_mask": every}

    def actions(self, actions) -> jax.Array:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integers, got "
                             f"{actions.dtype}{list(actions.shape)}")
        return jnp.asarray(actions, jnp.int32)


class JaxgymVectorEnv(gymnasium.vector.VectorEnv):
    """`num_envs` boards of `game`, batched on the device."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, game: str, num_envs: int = 1, render_mode: str | None = None,
                 **options: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.boards = _Boards(game, num_envs, options)
        self.num_envs, self.render_mode = num_envs, render_mode
        self.single_observation_space = spaces.Box(0, 255, self.boards.frame_shape, np.uint8)
        self.single_action_space = spaces.Discrete(self.boards.env.num_actions)
        self.observation_space = spaces.Box(0, 255, (num_envs,) + self.boards.frame_shape,
                                            np.uint8)
        self.action_space = spaces.MultiDiscrete([self.boards.env.num_actions] * num_envs)
        self.states = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        key = jax.random.key(int(self.np_random.integers(2**31)))
        self.states = self.boards.resets(key)
        return np.asarray(self.boards.draw(self.states)), self.boards.info(self.states)

    def step(self, actions):
        if self.states is None:
            raise RuntimeError("call reset() before step()")
        self.states, moved = self.boards.step(self.states, self.boards.actions(actions))
        info = self.boards.info(self.states)
        done = np.asarray(moved.done)
        if done.any():
            info["final_obs"] = np.asarray(self.boards.draw(moved))
            info["_final_obs"] = done
        return (np.asarray(self.boards.draw(self.states)), np.asarray(moved.reward),
                np.asarray(moved.terminated), np.asarray(moved.truncated), info)

    def render(self):
        return None if self.states is None else np.asarray(self.boards.draw(self.states))


class JaxgymEnv(gymnasium.Env):
    """One board of `game` (for `gymnasium.make` and gymnasium's env checker); the vector env
    is the fast path."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str, render_mode: str | None = None, **options: Any):
        self.vector = JaxgymVectorEnv(game, 1, **options)
        self.render_mode = render_mode
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        frames, info = self.vector.reset(seed=int(self.np_random.integers(2**31)))
        return frames[0], _first(info)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        frames, rewards, terminated, truncated, info = self.vector.step(np.asarray([action]))
        frame = info["final_obs"][0] if "final_obs" in info else frames[0]  # the finished board
        return frame, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), _first(info)

    def render(self):
        frames = self.vector.render()
        return None if frames is None else frames[0]


def _first(info: dict) -> dict:
    return {k: v[0] for k, v in info.items() if not k.startswith("_")}


def register() -> None:
    """Register every game's id (done on import)."""
    for game in jaxgym.list_games():
        if env_id(game) not in gymnasium.registry:
            gymnasium.register(env_id(game), entry_point=f"{__name__}:JaxgymEnv",
                               vector_entry_point=f"{__name__}:JaxgymVectorEnv",
                               kwargs={"game": game})


register()

"""Wrappers around an Env. Auto-reset lives here, not inside each game's rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxgym.core import Env, State


@dataclasses.dataclass(frozen=True)
class AutoReset:
    """Deal a fresh board wherever an episode ends.

    `step` takes a single state or a batch of states (one leading axis) with their actions.
    After the move, a board whose episode ended (terminated or truncated) is replaced by a
    fresh one drawn from its own key. The returned state keeps that move's `reward`,
    `terminated` and `truncated`, so returns and episode ends can be counted; the next `step`
    plays the fresh board.

    Dealing runs under `lax.cond` on "some board finished", so steps on which no episode ends
    never pay for it. Pass the whole batch rather than `jax.vmap`-ing this wrapper: under vmap
    the cond turns into a select and the deal would run on every step.
    """

    env: Env

    def reset(self, key: jax.Array) -> State:
        """Same as `env.reset` (one key; vmap it for a batch)."""
        return self.env.reset(key)

    def step(self, state: State, action: Any) -> State:
        return self.step_and_final(state, action)[0]

    def step_and_final(self, state: State, action: Any) -> tuple[State, State]:
        """(`step`'s state, the state the move left before any fresh deal): the second holds
        the finished boards, e.g. for a gymnasium vector env's `final_obs`."""
        batched = state.board.ndim > len(self.env.board_shape)
        over_batch = jax.vmap if batched else (lambda f: f)
        # A fresh board still shows the finished episode's flags; play it as live.
        live = state.replace(
            terminated=jnp.zeros_like(state.terminated), truncated=jnp.zeros_like(state.truncated)
        )
        moved = over_batch(self.env.step)(live, jnp.asarray(action, jnp.int32))

        def deal_where_done(moved: State) -> State:
            reset_keys = over_batch(lambda key: jax.random.split(key)[0])(moved.key)
            fresh = over_batch(self.env.reset)(reset_keys)
            fresh = fresh.replace(
                reward=moved.reward, terminated=moved.terminated, truncated=moved.truncated
            )
            done = moved.done

            def pick(new, old):
                where_done = done.reshape(done.shape + (1,) * (new.ndim - done.ndim))
                return jnp.where(where_done, new, old)

            return jax.tree.map(pick, fresh, moved)

        return jax.lax.cond(jnp.any(moved.done), deal_where_done, lambda s: s, moved), moved

"""One game's boards drawn to RGB pixels: a single gather of sprite rows per frame."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgym.core import Env, State


def frame_shape(env: Env) -> tuple[int, int, int]:
    """(H, W, 3) of this env's frames."""
    rows, cols = env.board_shape
    return (rows * env.tile_px, cols * env.tile_px, 3)


def frame(env: Env, state: State) -> jax.Array:
    """uint8[rows * tile_px, cols * tile_px, 3]: the board as a picture (jit/vmap-able).

    Cell values index the env's sprites (`env.sprites()`); -1 (empty) draws the empty cell.
    """
    atlas = env.sprites()
    n_sprites, px = atlas.shape[0], env.tile_px
    rows, cols = env.board_shape
    sprite_rows = jnp.asarray(atlas.reshape(n_sprites, px, px * 3))
    sprite = jnp.where(state.board < 0, n_sprites - 1, jnp.clip(state.board, 0, n_sprites - 2))
    # picture[i, y, j, :] = row y of the sprite in cell (i, j): already in frame order.
    picture = sprite_rows[sprite[:, None, :], jnp.arange(px)[None, :, None]]
    return picture.reshape(rows * px, cols * px, 3)


def frames(env: Env, states: State) -> jax.Array:
    """uint8[B, H, W, 3]: `frame` over a batch of states."""
    return jax.vmap(lambda s: frame(env, s))(states)


def cell_box(env: Env, row: int, col: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) pixel bounds of a cell in a frame, bottom/right exclusive."""
    px = env.tile_px
    return (row * px, col * px, (row + 1) * px, (col + 1) * px)

"""Several games' boards on one canvas: the frames of a mixed batch
(`jaxgym.multigame.MultiGame`), so that a policy sees one image size.

By default the canvas is the largest frame height by the largest frame width among the games.
Each game is redrawn with the largest cell size that fits the canvas (its aspect is kept and
its pixels stay crisp: no resampling) and centred on a white background. In a mixed batch the
canvas, not each game's `tile_px`, sets the cell size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxgym.core import Env, State, require
from jaxgym.multigame import MultiGame
from render.boards import frame_shape, frames

BACKGROUND = 255  # canvas padding, white
MAX_TILE_PX = 256


def canvas_shape(envs: Sequence[Env]) -> tuple[int, int]:
    """(height, width): the largest frame height and the largest frame width of the games."""
    shapes = [frame_shape(env) for env in envs]
    return (max(s[0] for s in shapes), max(s[1] for s in shapes))


def fitted(env: Env, canvas: tuple[int, int]) -> Env:
    """The game as drawn on `canvas`: with the largest `tile_px` whose frame fits it.
    ValueError if its cells would be under 8 pixels."""
    require(len(canvas) == 2 and all(isinstance(x, int) and x >= 8 for x in canvas),
            f"canvas must be (height, width), ints >= 8, got {canvas}")
    rows, cols = env.board_shape
    px = min(canvas[0] // rows, canvas[1] // cols, MAX_TILE_PX)
    require(px >= 8, f"canvas {tuple(canvas)} is too small for a {rows}x{cols} {env.name} board "
                     "(cells would be under 8 pixels)")
    return env if px == env.tile_px else dataclasses.replace(env, tile_px=px)


def on_canvas(env: Env, states: State, canvas: tuple[int, int]) -> jax.Array:
    """uint8[n, canvas_h, canvas_w, 3]: a batch of one game's boards, fitted and centred."""
    drawn = frames(fitted(env, canvas), states)
    _, h, w, _ = drawn.shape
    top, left = (canvas[0] - h) // 2, (canvas[1] - w) // 2
    pad = ((0, 0), (top, canvas[0] - h - top), (left, canvas[1] - w - left), (0, 0))
    return jnp.pad(drawn, pad, constant_values=BACKGROUND)


def mix_frames(mix: MultiGame, states: tuple[State, ...],
               canvas: tuple[int, int] | None = None) -> jax.Array:
    """uint8[batch, canvas_h, canvas_w, 3]: every board of a mixed batch, in board order, on
    one canvas (default: `canvas_shape(mix.envs)`). jit-able."""
    canvas = canvas_shape(mix.envs) if canvas is None else tuple(canvas)
    return jnp.concatenate([on_canvas(env, s, canvas) for env, s in zip(mix.envs, states)])


@functools.partial(jax.jit, static_argnames=("mix", "canvas"))
def draw_mix(mix: MultiGame, states: tuple[State, ...],
             canvas: tuple[int, int] | None = None) -> jax.Array:
    """`mix_frames`, compiled once per mix and canvas."""
    return mix_frames(mix, states, canvas)

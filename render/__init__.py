"""Boards drawn to RGB pixels by JAX functions, plus host-side savers.

    frame = render.frame(env, state)              # uint8[rows * tile_px, cols * tile_px, 3]
    frames = render.frames(env, states)           # batched: uint8[B, H, W, 3]
    render.save_png("board.png", frame)
    render.save_animation("game.gif", list_of_frames, fps=2)
    frames = render.mix_frames(mix, states)       # a jaxgym.multigame batch on one canvas

Each game draws its sprites once on the host (`env.sprites()`, an atlas per setting), and the
renderer closes over them as a constant; a frame is then a single gather of sprite rows, with
no loop over cells or pixels.
"""

from __future__ import annotations

from render.canvas import canvas_shape, draw_mix, mix_frames
from render.files import annotate, save_animation, save_png
from render.boards import cell_box, frame, frame_shape, frames

__all__ = ["annotate", "canvas_shape", "cell_box", "draw_mix", "frame", "frame_shape", "frames",
           "mix_frames", "save_animation", "save_png"]



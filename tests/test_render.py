"""The renderer: shapes, per-type pixel identity, and a golden image."""

import os

import imageio.v3 as iio
import jax
import numpy as np
import pytest

import jaxgym
import render

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "swap_4x4.png")
GOLDEN_BOARD = np.array([[0, 0, 1, 0], [2, 3, 4, 5], [4, 5, 2, 3], [1, 2, 3, 4]])


def test_frame_shape_dtype_and_batching(key):
    env = jaxgym.make("swap", rows=5, cols=7, colours=3, shapes=2, tile_px=16)
    state = env.reset(key)
    frame = jax.jit(lambda s: render.frame(env, s))(state)
    assert frame.shape == render.frame_shape(env) == (80, 112, 3)
    assert frame.dtype == np.uint8
    batch = jax.vmap(env.reset)(jax.random.split(key, 3))
    frames = jax.jit(lambda s: render.frames(env, s))(batch)
    assert frames.shape == (3, 80, 112, 3)
    np.testing.assert_array_equal(frames[0], render.frame(env, jax.tree.map(lambda x: x[0], batch)))


@pytest.mark.parametrize("colours, shapes", [(4, 3), (10, 6)])
def test_same_type_same_pixels_different_types_different_pixels(key, colours, shapes):
    env = jaxgym.make("swap", rows=8, cols=8, colours=colours, shapes=shapes, tile_px=20)
    state = env.reset(key)
    frame = np.asarray(render.frame(env, state))
    board = np.asarray(state.board)
    cells = {}
    for r in range(8):
        for c in range(8):
            top, left, bottom, right = render.cell_box(env, r, c)
            cells.setdefault(int(board[r, c]), []).append(frame[top:bottom, left:right])
    for pictures in cells.values():
        for picture in pictures[1:]:
            np.testing.assert_array_equal(picture, pictures[0])
    firsts = [p[0] for p in cells.values()]
    for i in range(len(firsts)):
        for j in range(i + 1, len(firsts)):
            assert np.abs(firsts[i].astype(int) - firsts[j].astype(int)).sum() > 0
    # Every type in the atlas, not only those dealt, is distinct.
    atlas = env.sprites()
    flat = atlas.reshape(atlas.shape[0], -1)
    assert len({row.tobytes() for row in flat}) == atlas.shape[0]


def test_golden_image(key):
    """A fixed 4x4 board must draw as the stored PNG (regenerate deliberately with
    `python tests/test_render.py` after an intended change to the sprites)."""
    env = jaxgym.make("swap", rows=4, cols=4, colours=3, shapes=2, tile_px=32)
    state = env.from_board(GOLDEN_BOARD, key)
    np.testing.assert_array_equal(state.board, GOLDEN_BOARD)
    frame = np.asarray(render.frame(env, state))
    golden = iio.imread(GOLDEN)
    assert golden.shape == frame.shape
    assert np.abs(golden.astype(int) - frame.astype(int)).max() <= 2


def test_savers_write_png_gif_and_reject_bad_frames(tmp_path, key):
    env = jaxgym.make("swap", preset="easy", tile_px=16)
    state = env.reset(key)
    frame = np.asarray(render.frame(env, state))
    render.save_png(tmp_path / "a.png", frame)
    np.testing.assert_array_equal(iio.imread(tmp_path / "a.png"), frame)
    render.save_animation(tmp_path / "a.gif", [frame, frame[::-1]], fps=4)
    assert iio.imread(tmp_path / "a.gif", index=None).shape[0] == 2
    with pytest.raises(ValueError, match="uint8"):
        render.save_png(tmp_path / "b.png", frame.astype(np.float32))
    captioned = render.annotate(frame, ["move 1"], [render.cell_box(env, 0, 0)])
    assert captioned.shape[1] == frame.shape[1] and captioned.shape[0] > frame.shape[0]


if __name__ == "__main__":
    env = jaxgym.make("swap", rows=4, cols=4, colours=3, shapes=2, tile_px=32)
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    render.save_png(GOLDEN, render.frame(env, env.from_board(GOLDEN_BOARD, jax.random.key(0))))
    print("wrote", GOLDEN)

"""Sprites drawn on the host: the empty cell every game shares and the coloured shapes of Swap
and Shisen-Sho. A game's `sprites()` (its atlas) is built from these.

An atlas is uint8[n_sprites, tile_px, tile_px, 3]. The renderer draws sprite v for a board value
v >= 0 (values past the end clip to the second-to-last sprite) and the last sprite, the empty
cell, for negative values.

Shapes are drawn by coverage: each pixel is split into SUPERSAMPLE x SUPERSAMPLE sample points,
and the fraction inside the shape blends its colour over the cell (anti-aliasing). Pure NumPy,
so the pixels are the same on every machine (the golden-image test relies on it).
"""

from __future__ import annotations

import functools

import numpy as np

from jaxgym import tiles

SUPERSAMPLE = 4
CELL_RGB = np.array([238, 236, 230], np.float32)
GRID_RGB = np.array([150, 150, 150], np.float32)
OUTLINE_DARKEN = 0.55


def _sample_points(px: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample coordinates in [-1, 1] (cell centre at 0), shape [px * S, px * S] each."""
    n = px * SUPERSAMPLE
    centres = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return x, -y  # y up, so triangles point up


def _inside_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: bool mask of sample points inside the polygon (vertices [k, 2])."""
    inside = np.zeros(x.shape, bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at)
    return inside


def _regular(k: int, radius: float, phase: float = np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(k) / k
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """bool mask of one shape, radius about 0.7 of the half-cell, enlarged by `grow`."""
    r = 0.68 + grow
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        s = 0.58 + grow
        return (np.abs(x) <= s) & (np.abs(y) <= s)
    if shape == "triangle":
        return _inside_polygon(x, y + 0.12, _regular(3, r + 0.08))
    if shape == "diamond":
        return np.abs(x) + np.abs(y) * 0.8 <= r
    if shape == "cross":
        arm = 0.22 + grow
        return ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
    if shape == "star":
        outer = _regular(5, r + 0.06)
        inner = _regular(5, (r + 0.06) * 0.45, phase=np.pi / 2 + np.pi / 5)
        star = np.empty((10, 2))
        star[0::2], star[1::2] = outer, inner
        return _inside_polygon(x, y + 0.05, star)
    raise ValueError(f"unknown shape {shape!r}")


def _coverage(mask: np.ndarray, px: int) -> np.ndarray:
    """float32[px, px]: fraction of each pixel's samples inside the mask."""
    return mask.reshape(px, SUPERSAMPLE, px, SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


def _blank_cell(px: int) -> np.ndarray:
    """float32[px, px, 3]: an empty cell with a one-pixel grid line on every side."""
    cell = np.broadcast_to(CELL_RGB, (px, px, 3)).copy()
    cell[[0, -1], :] = GRID_RGB
    cell[:, [0, -1]] = GRID_RGB
    return cell


def shape_sprite(shape: str, rgb: tuple[int, int, int], px: int) -> np.ndarray:
    """uint8[px, px, 3]: a shape in its colour, with a darker outline, on an empty cell."""
    x, y = _sample_points(px)
    outline_width = 2.2 / px  # about one pixel, in cell units
    body = _coverage(_shape_mask(shape, x, y), px)[..., None]
    outer = _coverage(_shape_mask(shape, x, y, grow=outline_width), px)[..., None]
    colour = np.asarray(rgb, np.float32)
    cell = _blank_cell(px)
    cell = cell * (1 - outer) + colour * OUTLINE_DARKEN * outer
    cell = cell * (1 - body) + colour * body
    return np.clip(np.rint(cell), 0, 255).astype(np.uint8)


def blank_cell(px: int) -> np.ndarray:
    """uint8[px, px, 3]: the empty cell every game draws for an empty board cell."""
    return np.clip(np.rint(_blank_cell(px)), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def shape_atlas(n_colours: int, n_shapes: int, px: int, palette: str = "distinct") -> np.ndarray:
    """uint8[n_colours * n_shapes + 1, px, px, 3]: every coloured-shape tile type, in type-id
    order (colour * n_shapes + shape), then the empty cell last."""
    colours = tiles.palette(palette)
    sprites = [
        shape_sprite(tiles.SHAPES[shape], colours[colour][1], px)
        for colour in range(n_colours)
        for shape in range(n_shapes)
    ]
    sprites.append(blank_cell(px))
    return np.stack(sprites)

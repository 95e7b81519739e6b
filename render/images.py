"""Sprites of the image-tile games ("shisensho-images"): every image of every class in use, drawn
once on the host per (source, classes, images_per_class, tile_px).

Board value v >= 0 shows image `v % images_per_class` of class `v // images_per_class`, so the
atlas holds the images class by class and the empty cell last. Each image is resized with a smooth
(bicubic) filter to fill the cell inside its one-pixel grid line, the same line `blank_cell` draws.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from jaxgym import images as image_sources
from jaxgym.core import Env
from render.atlas import blank_cell, register_atlas


def image_sprite(image: np.ndarray, px: int) -> np.ndarray:
    """uint8[h, w, 3] -> uint8[px, px, 3]: the image filling an empty cell inside its grid line."""
    inner = Image.fromarray(image).resize((px - 2, px - 2), Image.Resampling.BICUBIC)
    cell = blank_cell(px)
    cell[1:-1, 1:-1] = np.asarray(inner)
    return cell


@functools.lru_cache(maxsize=32)
def image_atlas(source: str, classes: int, images_per_class: int, px: int) -> np.ndarray:
    """uint8[classes * images_per_class + 1, px, px, 3]: sprite k * images_per_class + i is
    image i of class k; the empty cell last."""
    loaded = image_sources.load(source, images_per_class)
    if not 1 <= classes <= loaded.num_classes:
        raise ValueError(
            f"classes={classes}, but image source {source!r} has {loaded.num_classes} classes"
        )
    if px < 3:
        raise ValueError(f"tile_px={px} is too small for an image inside the grid line; use >= 3")
    chosen = loaded.images[:classes].reshape(-1, *loaded.images.shape[2:])
    sprites = [image_sprite(image, px) for image in chosen]
    sprites.append(blank_cell(px))
    return np.stack(sprites)


@register_atlas("shisensho-images")
def class_images(env: Env) -> np.ndarray:
    """Shisen-Sho with image tiles: see `image_atlas`."""
    return image_atlas(env.image_source, env.classes, env.images_per_class, env.tile_px)

"""Number tiles for 2048: sprite k is the tile 2**k, a rounded square in the classic 2048 colour
of its value with the number written in the middle.

Colours follow the original game: light beige for 2 and 4, oranges and reds up to 64, yellows
up to 2048, then dark tiles (here in a few alternating dark hues, so neighbouring values differ
in colour too). Numbers up to 7 digits (2**23 = 8388608) are written out, shrunk to fit the
tile; larger ones as 2 with the exponent raised ("2" and a small "24"). Drawn with PIL at
SUPERSAMPLE times the size and box-filtered down (anti-aliased), over the empty cell of
`render.atlas`, so tiles keep the grid line.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxgym.core import Env
from render.atlas import blank_cell, register_atlas

SUPERSAMPLE = 4
LONGEST_WRITTEN_OUT = 7  # digits; longer numbers are drawn as 2 and a raised exponent

DARK_TEXT = (96, 88, 80)  # the original 2 and 4 text (119, 110, 101), darkened
LIGHT_TEXT = (249, 246, 242)
TILE_RGB = {  # exponent -> tile colour (the original game's palette)
    1: (238, 228, 218),
    2: (237, 224, 200),
    3: (242, 177, 121),
    4: (245, 149, 99),
    5: (246, 124, 95),
    6: (246, 94, 59),
    7: (237, 207, 114),
    8: (237, 204, 97),
    9: (237, 200, 80),
    10: (237, 197, 63),
    11: (237, 194, 46),
}
BEYOND_RGB = ((60, 58, 50), (38, 62, 92), (84, 44, 76), (30, 78, 70))  # 4096 and up, in turn


def _luminance(rgb: tuple[int, int, int]) -> float:
    """Relative luminance (WCAG) of an sRGB colour, 0 black .. 1 white."""
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def tile_colours(k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(tile, text) RGB of the tile 2**k: `tile_colours(1) == ((238, 228, 218), DARK_TEXT)`.
    The text is whichever of DARK_TEXT and LIGHT_TEXT contrasts more with the tile (the
    original game writes white on its yellows, which is hard to read)."""
    tile = TILE_RGB.get(k, BEYOND_RGB[(k - 12) % len(BEYOND_RGB)])
    contrast = lambda text: (max(_luminance(tile), _luminance(text)) + 0.05) / (
        min(_luminance(tile), _luminance(text)) + 0.05)
    return tile, max((DARK_TEXT, LIGHT_TEXT), key=contrast)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(size, 1))


def _fitted_font(label: str, room: float, largest: int) -> ImageFont.FreeTypeFont:
    """The largest font, at most `largest` px, in which `label` is at most `room` px wide."""
    size = largest
    while size > 1 and _font(size).getlength(label) > room:
        size -= 1
    return _font(size)


def _draw_label(draw: ImageDraw.ImageDraw, k: int, side: int, rgb: tuple[int, int, int]) -> None:
    """Write 2**k centred in a side x side square: the number, or 2 and a raised k. The
    strokes are thickened (the built-in font is light) by a stroke of 1/28 of the font size."""
    centre, room = side / 2, side * 0.84
    number = str(2**k)
    if len(number) <= LONGEST_WRITTEN_OUT:
        font = _fitted_font(number, room, round(side * 0.5))
        ink = dict(fill=rgb, stroke_width=round(font.size / 28), stroke_fill=rgb)
        draw.text((centre, centre), number, font=font, anchor="mm", **ink)
        return
    base = _fitted_font("2" + "0" * len(str(k)), room, round(side * 0.5))
    power = _font(round(base.size * 0.6))
    ink = dict(fill=rgb, stroke_width=round(power.size / 28), stroke_fill=rgb)
    base_width, power_width = base.getlength("2"), power.getlength(str(k))
    left = centre - (base_width + power_width) / 2
    draw.text((left, centre), "2", font=base, anchor="lm", **ink)
    draw.text((left + base_width, centre - base.size * 0.3), str(k), font=power, anchor="lm", **ink)


def number_sprite(k: int, px: int) -> np.ndarray:
    """uint8[px, px, 3]: the tile 2**k on an empty cell."""
    side = px * SUPERSAMPLE
    tile_rgb, text_rgb = tile_colours(k)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    inset, radius = round(side * 0.06), round(side * 0.12)
    edge = tuple(round(c * 0.8) for c in tile_rgb)
    draw.rounded_rectangle(
        (inset, inset, side - 1 - inset, side - 1 - inset), radius=radius,
        fill=tile_rgb + (255,), outline=edge + (255,), width=SUPERSAMPLE,
    )
    _draw_label(draw, k, side, text_rgb + (255,))
    layer = layer.resize((px, px), Image.Resampling.BOX)
    cell = Image.fromarray(blank_cell(px)).convert("RGBA")
    return np.asarray(Image.alpha_composite(cell, layer).convert("RGB"))


@functools.lru_cache(maxsize=32)
def number_atlas(largest: int, px: int) -> np.ndarray:
    """uint8[largest + 2, px, px, 3]: the empty cell, the tiles 2**1 .. 2**largest, and the
    empty cell again last (the renderer's sprite for negative values)."""
    empty = blank_cell(px)
    return np.stack([empty] + [number_sprite(k, px) for k in range(1, largest + 1)] + [empty])


@register_atlas("2048")
def twenty48_atlas(env: Env) -> np.ndarray:
    """2048: board value k (an exponent) is sprite k; uint8[size * size + 3, px, px, 3]."""
    return number_atlas(env.num_tile_types, env.tile_px)

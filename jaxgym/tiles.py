"""The named colours and shapes that coloured-shape games (Swap, Shisen-Sho) draw their tile
types from. Names appear in prompts and perception texts; RGB values are what the renderer paints.

A tile type is `colour * n_shapes + shape`, so with 4 colours x 3 shapes type 5 is
(colour 1, shape 2) = "Green triangle".

Two palettes, a perceptual-difficulty knob (`palette=` on the games): `distinct` (well-separated
hues, the default) and `close` (ten neighbouring hues from crimson to chartreuse, which a model
must tell apart by small colour differences).
"""

from __future__ import annotations

from jaxgym.core import EMPTY

# Well-separated colours (after Kelly's and Trubetskoy's lists), distinct on a light background.
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("Red", (230, 25, 75)),
    ("Green", (60, 180, 75)),
    ("Blue", (0, 110, 220)),
    ("Yellow", (240, 200, 0)),
    ("Purple", (145, 30, 180)),
    ("Orange", (245, 130, 48)),
    ("Cyan", (20, 200, 210)),
    ("Pink", (240, 110, 200)),
    ("Brown", (150, 90, 40)),
    ("Black", (30, 30, 30)),
)

CLOSE_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("Crimson", (200, 20, 60)),
    ("Red", (235, 40, 35)),
    ("Vermilion", (240, 85, 40)),
    ("Coral", (250, 125, 90)),
    ("Orange", (250, 150, 20)),
    ("Amber", (250, 190, 10)),
    ("Gold", (215, 175, 55)),
    ("Yellow", (245, 225, 60)),
    ("Lime", (190, 225, 50)),
    ("Chartreuse", (120, 200, 40)),
)

PALETTES: dict[str, tuple[tuple[str, tuple[int, int, int]], ...]] = {
    "distinct": COLOURS,
    "close": CLOSE_COLOURS,
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")

MAX_COLOURS = len(COLOURS)
MAX_SHAPES = len(SHAPES)


def palette(name: str) -> tuple[tuple[str, tuple[int, int, int]], ...]:
    """The (name, RGB) colours of a palette; ValueError for an unknown palette."""
    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}; choose one of {sorted(PALETTES)}")
    return PALETTES[name]


def tile_name(tile: int, n_shapes: int, palette_name: str = "distinct") -> str:
    """`tile_name(5, 3) -> "Green triangle"`."""
    colour, shape = divmod(int(tile), n_shapes)
    return f"{palette(palette_name)[colour][0]} {SHAPES[shape]}"


def tile_names(n_colours: int, n_shapes: int, palette_name: str = "distinct") -> tuple[str, ...]:
    """Names of every tile type, indexed by type id."""
    return tuple(tile_name(t, n_shapes, palette_name) for t in range(n_colours * n_shapes))


def board_names(board, n_colours: int, n_shapes: int, palette_name: str = "distinct") -> list[list[str]]:
    """The tile name of every cell of a concrete board (int[rows, cols]); `EMPTY` for an empty
    cell (-1); IndexError for a type past colours x shapes."""
    names = tile_names(n_colours, n_shapes, palette_name)
    return [[names[t] if t >= 0 else EMPTY for t in row] for row in board]

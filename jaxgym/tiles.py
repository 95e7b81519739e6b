"""The named colours and shapes that coloured-shape games (Swap, Shisen-Sho) draw their tile
types from. Names appear in prompts and perception texts; RGB values are what the renderer paints.

A tile type is `colour * n_shapes + shape`, so with 4 colours x 3 shapes type 5 is
(colour 1, shape 2) = "Green triangle".
"""

from __future__ import annotations

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

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")

MAX_COLOURS = len(COLOURS)
MAX_SHAPES = len(SHAPES)


def tile_name(tile: int, n_shapes: int) -> str:
    """`tile_name(5, 3) -> "Green triangle"`."""
    colour, shape = divmod(int(tile), n_shapes)
    return f"{COLOURS[colour][0]} {SHAPES[shape]}"


def tile_names(n_colours: int, n_shapes: int) -> tuple[str, ...]:
    """Names of every tile type, indexed by type id."""
    return tuple(tile_name(t, n_shapes) for t in range(n_colours * n_shapes))

"""Shisen-Sho: known positions, the vectorised connection test against a breadth-first search,
dealing (solvable boards really clear), and the image-tile variant."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxgym
from jaxgym import text
from jaxgym.games import shisensho

# ---- a plain breadth-first search, the reference for the connection test ---------------------


def bfs_connected(filled: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """A path of at most 3 straight segments from cell a to cell b through empty cells of the
    board padded with a one-cell empty ring. States are (cell, direction) with the segments
    used so far; a 0-1 BFS (same direction: same segment count)."""
    rows, cols = filled.shape
    blocked = np.zeros((rows + 2, cols + 2), bool)
    blocked[1:-1, 1:-1] = filled
    start, goal = (a[0] + 1, a[1] + 1), (b[0] + 1, b[1] + 1)
    directions = ((0, 1), (1, 0), (0, -1), (-1, 0))
    segments = {(start, d): 1 for d in range(4)}
    queue = collections.deque(segments)
    while queue:
        cell, d = queue.popleft()
        for nd, (dr, dc) in enumerate(directions):
            used = segments[(cell, d)] + (nd != d)
            nxt = (cell[0] + dr, cell[1] + dc)
            if used > 3 or not (0 <= nxt[0] < rows + 2 and 0 <= nxt[1] < cols + 2):
                continue
            if nxt == goal:
                return True
            if blocked[nxt] or segments.get((nxt, nd), 4) <= used:
                continue
            segments[(nxt, nd)] = used
            queue.appendleft((nxt, nd)) if nd == d else queue.append((nxt, nd))
    return False


@functools.lru_cache(maxsize=None)
def jitted_connected_pairs():
    return jax.jit(shisensho.connected_pairs)


@given(
    rows=st.integers(1, 5),
    cols=st.integers(2, 5),
    density=st.sampled_from([0.2, 0.5, 0.8]),
    seed=st.integers(0, 2**31),
)
def test_connection_test_agrees_with_breadth_first_search(rows, cols, density, seed):
    filled = np.random.default_rng(seed).random((rows, cols)) < density
    got = np.asarray(jitted_connected_pairs()(jnp.asarray(filled)))
    first, second = shisensho.pair_cells(rows * cols)
    want = [bfs_connected(filled, divmod(int(i), cols), divmod(int(j), cols)) for i, j in zip(first, second)]
    np.testing.assert_array_equal(got, np.array(want))


@pytest.mark.parametrize("shape, copies", [((12, 12), 4), ((5, 6), 6)])
def test_same_type_pairs_mask_equals_the_all_pairs_test(shape, copies):
    """Boards with up to `copies` tiles a type (and holes), and crowded ones (walls)."""
    rows, cols = shape
    n = rows * cols
    rng = np.random.default_rng(n)
    deck = np.repeat(np.arange(n // copies + 1), copies)[:n]
    boards = np.stack([rng.permutation(deck) for _ in range(24)]).reshape(24, rows, cols)
    boards = np.where(rng.random(boards.shape) < 0.4, -1, boards)
    boards[:4] = np.where(rng.random((4, rows, cols)) < 0.5, 0, boards[:4])  # type 0 crowds
    boards = jnp.asarray(boards, jnp.int32)
    masks = jax.jit(jax.vmap(lambda b: shisensho.legal_mask(b, copies)))
    want = jax.jit(jax.vmap(shisensho.all_pairs_mask))(boards)
    np.testing.assert_array_equal(masks(boards), want)  # some crowded: the all-pairs test runs
    np.testing.assert_array_equal(masks(boards[4:20]), want[4:20])  # none crowded
    one = jax.jit(lambda b: shisensho.legal_mask(b, copies))
    for b in (0, 4):  # one board, crowded or not
        np.testing.assert_array_equal(one(boards[b]), want[b])


# ---- known positions --------------------------------------------------------------------------

ENV = jaxgym.make("shisensho", rows=6, cols=6, colours=3, shapes=3, tile_px=12)


def board(picture: str) -> np.ndarray:
    """'.' empty, 'A' and 'B' the tiles under test (types 0 and 1), '#' a filler (type 8)."""
    codes = {".": -1, "A": 0, "B": 1, "#": 8}
    return np.array([[codes[ch] for ch in line.split()] for line in picture.strip().splitlines()])


def pair_valid(picture: str, a: tuple[int, int], b: tuple[int, int], key) -> bool:
    state = ENV.from_board(board(picture), key)
    action = ENV.encode_action(*a, *b)
    after = ENV.step(state, action)
    valid = float(after.reward) == 1.0
    assert valid == bool(jaxgym.is_legal(state.legal_action_mask, action))
    if valid:
        assert int(after.board[a]) == -1 and int(after.board[b]) == -1
    else:
        np.testing.assert_array_equal(after.board, state.board)
        assert float(after.reward) == -1.0
    return valid


STRAIGHT = """
# # # # # #
# A . . A #
# # # # # #
# # # # # #
# # # # # #
# # # # # #
"""
ONE_TURN = """
# # # # # #
# A . . # #
# # # . # #
# # # A # #
# # # # # #
# # # # # #
"""
TWO_TURNS = """
# # # # # #
# A # # # #
# . . . . #
# # # # A #
# # # # # #
# # # # # #
"""
AROUND_THE_RING = """
# A # # A #
# # # # # #
# # # # # #
# # # # # #
# # # # # #
# # # # # #
"""
THREE_TURNS = """
# # # # # #
# A . # # #
# # . . # #
# # # . A #
# # # # # #
# # # # # #
"""
BLOCKED = """
# # # # # #
# A . # A #
# # # # # #
# # # # # #
# # # # # #
# # # # # #
"""


@pytest.mark.parametrize(
    "picture, a, b, valid",
    [
        (STRAIGHT, (1, 1), (1, 4), True),
        (ONE_TURN, (1, 1), (3, 3), True),
        (TWO_TURNS, (1, 1), (3, 4), True),
        (AROUND_THE_RING, (0, 1), (0, 4), True),
        (THREE_TURNS, (1, 1), (3, 4), False),
        (BLOCKED, (1, 1), (1, 4), False),
    ],
)
def test_paths(picture, a, b, valid, key):
    assert bfs_connected(board(picture) >= 0, a, b) == valid  # the pictures mean what they say
    assert pair_valid(picture, a, b, key) == valid
    assert pair_valid(picture, b, a, key) == valid  # either order is the same action


def test_adjacent_pairs_and_edge_pairs_connect(key):
    picture = """
    A A # # # B
    # # # # # #
    # # # # # #
    # # # # # #
    # # # # # #
    A # # # # B
    """
    assert pair_valid(picture, (0, 0), (0, 1), key)  # neighbours
    assert pair_valid(picture, (0, 5), (5, 5), key)  # down the ring on the right
    assert not pair_valid(picture, (0, 1), (5, 0), key)  # round a corner of the ring: 4 segments


def test_different_types_same_cell_and_empty_cells_are_invalid(key):
    picture = """
    A B . # # #
    # # . # # #
    # # # # # #
    # # # # # #
    # # # # # #
    # # # # # A
    """
    assert not pair_valid(picture, (0, 0), (0, 1), key)  # different types, adjacent
    assert int(ENV.encode_action(0, 0, 0, 0)) == jaxgym.INVALID_ACTION  # the same cell twice
    state = ENV.from_board(board(picture), key)
    after = ENV.step(state, ENV.encode_action(0, 0, 0, 0))
    assert float(after.reward) == -1.0
    assert not pair_valid(picture, (0, 2), (1, 2), key)  # two empty cells
    assert not pair_valid(picture, (0, 1), (0, 2), key)  # a tile and an empty cell


def test_removing_the_last_pair_terminates(key):
    last = np.full((6, 6), -1)
    last[2, 2] = last[4, 5] = 3
    state = ENV.from_board(last, key)
    assert not bool(state.terminated)
    after = ENV.step(state, ENV.encode_action(2, 2, 4, 5))
    assert float(after.reward) == 1.0
    assert bool(after.terminated) and not after.legal_action_mask.any()
    assert (np.asarray(after.board) == -1).all()
    assert float(ENV.step(after, 0).reward) == 0.0  # a finished episode does not move


def test_a_stuck_board_terminates(key):
    grid = np.full((6, 6), -1)
    grid[1, 1] = grid[4, 4] = 0  # a pair, each tile walled in by four single tiles
    walls = [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3), (4, 5), (5, 4)]
    for tile, cell in enumerate(walls, start=1):
        grid[cell] = tile
    state = ENV.from_board(grid, key)
    assert bool(state.terminated) and not state.legal_action_mask.any()
    assert float(ENV.step(state, ENV.encode_action(1, 1, 4, 4)).reward) == 0.0  # already over


def test_actions_encode_and_decode_every_pair():
    env = jaxgym.make("shisensho", rows=4, cols=4, colours=2, shapes=2)
    actions = jnp.arange(env.num_actions)
    r1, c1, r2, c2 = jax.vmap(env.decode_action)(actions)
    np.testing.assert_array_equal(jax.vmap(env.encode_action)(r1, c1, r2, c2), actions)
    np.testing.assert_array_equal(jax.vmap(env.encode_action)(r2, c2, r1, c1), actions)
    assert (np.asarray(r1 * 4 + c1) < np.asarray(r2 * 4 + c2)).all()
    assert all(int(x) == -1 for x in env.decode_action(env.num_actions))
    assert int(env.encode_action(0, 0, 4, 0)) == -1


# ---- dealing ----------------------------------------------------------------------------------


def clearable(types: np.ndarray) -> bool:
    """Depth-first search over removal orders (small boards only), memoised on the board."""
    seen = set()

    def search(cells: np.ndarray) -> bool:
        if (cells < 0).all():
            return True
        if cells.tobytes() in seen:
            return False
        seen.add(cells.tobytes())
        first, second = shisensho.pair_cells(cells.size)
        for k in np.flatnonzero(np.asarray(shisensho.legal_mask(jnp.asarray(cells), 4))):
            nxt = cells.copy()
            nxt.flat[first[k]] = nxt.flat[second[k]] = -1
            if search(nxt):
                return True
        return False

    return search(types)


def test_deals_hold_each_type_copies_times_and_have_a_move(key):
    env = jaxgym.make("shisensho", preset="paper")
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(key, 8))
    for grid in np.asarray(states.board):
        np.testing.assert_array_equal(np.bincount(grid.ravel(), minlength=36), np.full(36, 4))
    assert np.asarray(states.legal_action_mask.any(axis=1)).all()
    assert not np.array_equal(states.board[0], states.board[1])


def test_solvable_deals_can_be_cleared(key):
    env = jaxgym.make("shisensho", rows=4, cols=4, colours=2, shapes=2, solvable=True)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(key, 6))
    for grid in np.asarray(states.board):
        assert clearable(grid)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="cells"):
        jaxgym.make("shisensho", rows=5, cols=5, colours=2, shapes=2)
    with pytest.raises(ValueError, match="even"):
        jaxgym.make("shisensho", rows=3, cols=3, colours=3, shapes=1, copies=3)
    with pytest.raises(ValueError, match="palette"):
        jaxgym.make("shisensho", preset="easy", palette="pastel")
    with pytest.raises(ValueError, match="tile values"):
        ENV.from_board(np.full((6, 6), 40), jax.random.key(0))
    with pytest.raises(ValueError, match="classes"):
        jaxgym.make("shisensho-images", rows=6, cols=8, classes=12)


# ---- the image-tile variant -------------------------------------------------------------------


def test_image_tiles_show_different_images_of_a_class_and_match_by_class(key):
    env = jaxgym.make("shisensho-images", preset="paper")
    state = env.reset(key)
    grid = np.asarray(state.board)
    classes = grid // env.images_per_class
    np.testing.assert_array_equal(np.bincount(classes.ravel(), minlength=9), np.full(9, 4))
    for k in range(9):
        assert len(set(grid[classes == k].tolist())) == 4  # four different pictures

    # Two different pictures of class 2 next to each other on an otherwise empty board.
    hand = np.full((6, 6), -1)
    hand[0, 0], hand[0, 1] = 2 * env.images_per_class + 0, 2 * env.images_per_class + 5
    hand[3, 3] = 1 * env.images_per_class + 0
    state = env.from_board(hand, key)
    assert float(env.step(state, env.encode_action(0, 0, 0, 1)).reward) == 1.0
    assert float(env.step(state, env.encode_action(0, 0, 3, 3)).reward) == -1.0
    assert text.perception(env, state).splitlines()[0] == "two | two | - | - | - | -"

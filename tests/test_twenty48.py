"""2048: known positions, slides against a plain-Python reference, chance, the expert, text and
pixels. Boards hold exponents: 0 empty, k the tile 2**k."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxgym
import render
from jaxgym import text
from jaxgym.games import twenty48

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3


@functools.lru_cache(maxsize=None)
def make(size=4, **kw):
    return jaxgym.make("2048", size=size, **kw)


@functools.lru_cache(maxsize=None)
def jitted_step(size=4):
    return jax.jit(make(size).step)


def board_of(rows):
    """A board from rows of tile values (0 for empty): [[2, 2, 0, 4]] -> [[1, 1, 0, 2]]."""
    values = np.asarray(rows)
    return np.where(values > 0, np.log2(np.maximum(values, 1)), 0).astype(np.int32)


def assert_moved_then_spawned(after, moved):
    """`after` is `moved` plus one new 2 or 4 on a cell that was empty."""
    after, moved = np.asarray(after), np.asarray(moved)
    new = np.argwhere(after != moved)
    assert len(new) == 1, f"expected one spawned tile, got {len(new)} changed cells:\n{after}\nvs\n{moved}"
    r, c = new[0]
    assert moved[r, c] == 0 and after[r, c] in (1, 2)


def play(board, action, key, size=4):
    env = make(size)
    state = env.from_board(board_of(board), key)
    return state, jitted_step(size)(state, action)


# ---- a plain-Python reference ---------------------------------------------------------------


def reference_line(line):
    """One line slid toward index 0: (exponents, merged value)."""
    tiles = [int(v) for v in line if v]
    out, merged, i = [], 0, 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            out.append(tiles[i] + 1)
            merged += 2 ** (tiles[i] + 1)
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (len(line) - len(out)), merged


def reference_slide(board, direction):
    board = np.array(board)
    n = board.shape[0]
    out, total = np.zeros_like(board), 0
    for i in range(n):
        index = {
            UP: (slice(None), i),
            DOWN: (slice(None, None, -1), i),
            LEFT: (i, slice(None)),
            RIGHT: (i, slice(None, None, -1)),
        }[direction]
        line, merged = reference_line(board[index])
        out[index] = line
        total += merged
    return out, total


# ---- known positions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, slid, reward",
    [
        ([2, 2, 2, 2], [4, 4, 0, 0], 8),
        ([4, 4, 8, 0], [8, 8, 0, 0], 8),  # not 16: the new 8 does not merge again
        ([2, 2, 4, 0], [4, 4, 0, 0], 4),
        ([2, 2, 2, 0], [4, 2, 0, 0], 4),  # the pair nearest the wall merges
        ([4, 0, 4, 8], [8, 8, 0, 0], 8),  # merges across a gap
        ([0, 0, 0, 2], [2, 0, 0, 0], 0),
        ([2, 4, 8, 16], [2, 4, 8, 16], 0),
    ],
)
def test_rows_slid_left(row, slid, reward):
    moved, merged = twenty48.slide_left(jnp.asarray(board_of([row])))
    np.testing.assert_array_equal(moved, board_of([slid]))
    assert float(merged) == reward


def test_two_two_two_two_left_through_the_env(key):
    state, after = play([[2, 2, 2, 2], [0] * 4, [0] * 4, [0] * 4], LEFT, key)
    assert float(after.reward) == 8.0
    assert_moved_then_spawned(after.board, board_of([[4, 4, 0, 0], [0] * 4, [0] * 4, [0] * 4]))
    assert int(after.step_count) == 1


def test_four_four_eight_left_gives_eight_eight_not_sixteen(key):
    state, after = play([[4, 4, 8, 0], [0] * 4, [0] * 4, [0] * 4], LEFT, key)
    assert float(after.reward) == 8.0
    assert_moved_then_spawned(after.board, board_of([[8, 8, 0, 0], [0] * 4, [0] * 4, [0] * 4]))


HAND_MADE = [
    [2, 2, 0, 4],
    [0, 4, 4, 4],
    [2, 0, 8, 8],
    [2, 4, 16, 0],
]
EXPECTED = {  # direction: (board after the slide, merged value)
    UP: ([[4, 2, 4, 8], [2, 8, 8, 8], [0, 0, 16, 0], [0, 0, 0, 0]], 4 + 8 + 8),
    RIGHT: ([[0, 0, 4, 4], [0, 0, 4, 8], [0, 0, 2, 16], [0, 2, 4, 16]], 4 + 8 + 16),
    DOWN: ([[0, 0, 0, 0], [0, 0, 4, 0], [2, 2, 8, 8], [4, 8, 16, 8]], 4 + 8 + 8),
    LEFT: ([[4, 4, 0, 0], [8, 4, 0, 0], [2, 16, 0, 0], [2, 4, 16, 0]], 4 + 8 + 16),
}


@pytest.mark.parametrize("direction", [UP, RIGHT, DOWN, LEFT])
def test_every_direction_on_a_hand_made_board(key, direction):
    board, reward = EXPECTED[direction]
    moved, merged = twenty48.slide(jnp.asarray(board_of(HAND_MADE)), direction)
    np.testing.assert_array_equal(moved, board_of(board))
    assert float(merged) == reward
    reference_board, reference_reward = reference_slide(board_of(HAND_MADE), direction)
    np.testing.assert_array_equal(reference_board, board_of(board))
    assert reference_reward == reward
    state, after = play(HAND_MADE, direction, key)
    assert bool(state.legal_action_mask[direction])
    assert float(after.reward) == reward
    assert_moved_then_spawned(after.board, board_of(board))


def test_full_board_without_merges_is_terminal(key):
    full = [[2, 4, 2, 4], [4, 2, 4, 2], [2, 4, 2, 4], [4, 2, 4, 2]]
    state = make().from_board(board_of(full), key)
    assert bool(state.terminated) and not np.asarray(state.legal_action_mask).any()
    after = jitted_step()(state, LEFT)  # a finished episode does not move
    np.testing.assert_array_equal(after.board, state.board)
    assert float(after.reward) == 0.0


def test_the_move_that_fills_the_board_can_end_the_game(key):
    # Left turns row 0 into 4 8 16 -; whatever spawns in the gap (2 or 4) has no equal
    # neighbour (16 left of it, 8 below), and nothing else on the board can merge.
    board = [[2, 2, 8, 16], [32, 64, 32, 8], [64, 32, 64, 32], [32, 64, 32, 64]]
    env = make()
    states = jax.vmap(lambda k: env.from_board(board_of(board), k))(jax.random.split(key, 16))
    after = jax.jit(jax.vmap(env.step))(states, jnp.full(16, LEFT))
    assert not np.asarray(states.terminated).any()
    assert np.asarray(after.terminated).all() and not np.asarray(after.legal_action_mask).any()
    np.testing.assert_array_equal(after.reward, 4.0)
    assert set(np.asarray(after.board[:, 0, 3]).tolist()) == {1, 2}


def test_a_move_that_changes_nothing_is_illegal(key):
    board = [[2, 0, 0, 0], [4, 0, 0, 0], [0] * 4, [0] * 4]
    state = make().from_board(board_of(board), key)
    np.testing.assert_array_equal(state.legal_action_mask, [False, True, True, False])
    for action in (UP, LEFT, -1, 4, 99):
        after = jitted_step()(state, action)
        assert float(after.reward) == -1.0
        np.testing.assert_array_equal(after.board, state.board)  # no spawn either
        np.testing.assert_array_equal(after.legal_action_mask, state.legal_action_mask)
        assert not bool(after.terminated)


def test_legal_mask_on_small_positions():
    mask = lambda rows: np.asarray(twenty48.legal_mask(jnp.asarray(board_of(rows)))).tolist()
    assert mask([[2, 0], [4, 0]]) == [False, True, False, False]
    assert mask([[2, 2], [4, 8]]) == [False, True, False, True]  # a merge both ways
    assert mask([[0, 0], [0, 0]]) == [False] * 4
    assert mask([[2, 4], [8, 16]]) == [False] * 4


# ---- chance ---------------------------------------------------------------------------------


def test_spawns_land_on_empty_cells_as_twos_or_fours_and_differ_by_key(key):
    env = make()
    board = board_of([[2, 2, 0, 4], [0, 8, 0, 0], [0, 0, 16, 0], [4, 0, 0, 0]])
    moved = np.asarray(twenty48.slide(jnp.asarray(board), LEFT)[0])
    states = jax.vmap(lambda k: env.from_board(board, k))(jax.random.split(key, 2000))
    after = np.asarray(jax.jit(jax.vmap(env.step))(states, jnp.full(2000, LEFT)).board)
    new = after != moved
    assert (new.sum(axis=(1, 2)) == 1).all()
    assert (moved[new.any(axis=0)] == 0).all()
    values = after[new]
    assert set(values.tolist()) <= {1, 2}
    assert 0.07 < np.mean(values == 2) < 0.13  # a 4 one time in ten
    counts = new.sum(axis=0)[moved == 0]
    assert counts.min() > 2000 / len(counts) * 0.6  # every empty cell, roughly evenly


def test_fresh_boards_hold_two_small_tiles(key):
    boards = np.asarray(jax.jit(jax.vmap(make().reset))(jax.random.split(key, 64)).board)
    assert ((boards > 0).sum(axis=(1, 2)) == 2).all()
    assert set(boards[boards > 0].tolist()) <= {1, 2}
    assert len({b.tobytes() for b in boards}) > 32


# ---- exact rewards --------------------------------------------------------------------------


@pytest.mark.parametrize("exponent", [20, 23, 24, 29, 30])
def test_merging_big_tiles_scores_exactly(key, exponent):
    board = np.zeros((4, 4), np.int32)
    board[0, :2] = exponent
    after = jitted_step()(make().from_board(board, key), LEFT)
    assert after.reward.dtype == jnp.float32
    assert float(after.reward) == 2.0 ** (exponent + 1)
    assert int(after.board[0, 0]) == exponent + 1


def test_a_moves_total_below_two_to_the_24_is_exact(key):
    board = np.array([[22, 22, 3, 3], [21, 21, 1, 1], [0] * 4, [0] * 4], np.int32)
    after = jitted_step()(make().from_board(board, key), LEFT)
    assert float(after.reward) == 2**23 + 2**4 + 2**22 + 2**2


def test_power_of_two_is_exact():
    k = jnp.arange(0, 128)
    np.testing.assert_array_equal(twenty48.power_of_two(k), 2.0 ** np.arange(0, 128, dtype=np.float64))


# ---- properties against the reference -------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _jit_slide_and_mask():
    return jax.jit(lambda b, d: (*twenty48.slide(b, d), twenty48.legal_mask(b)))


@st.composite
def boards(draw):
    n = draw(st.integers(2, 5))
    cells = draw(st.lists(st.sampled_from([0, 0, 0, 1, 1, 2, 2, 3, 4, 9]), min_size=n * n, max_size=n * n))
    return np.array(cells, np.int32).reshape(n, n)


@given(boards())
def test_slides_match_the_reference_in_every_direction(board):
    fn = _jit_slide_and_mask()
    for direction in (UP, RIGHT, DOWN, LEFT):
        moved, merged, mask = fn(jnp.asarray(board), direction)
        expected, reward = reference_slide(board, direction)
        np.testing.assert_array_equal(moved, expected)
        assert float(merged) == reward
        assert bool(mask[direction]) == (not np.array_equal(expected, board))


# ---- the jit/vmap contract and determinism --------------------------------------------------


def raw(state):
    """The state with its PRNG key as plain integers, for comparing."""
    return state.replace(key=jax.random.key_data(state.key))


def test_jit_vmap_and_plain_agree(key):
    env = make(3)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(key, 4))
    actions = jnp.array([3, 1, 2, 0])
    batched = jax.jit(jax.vmap(env.step))(states, actions)
    for i in range(2):  # the plain (op by op) step is slow to run
        one = jax.tree.map(lambda x: x[i], states)
        plain, jitted = env.step(one, actions[i]), jitted_step(3)(one, actions[i])
        for a, b, c in zip(*(jax.tree.leaves(raw(s)) for s in (plain, jitted, batched))):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c[i])


def test_same_seed_same_game_other_seed_other_game():
    env = make()

    @jax.jit
    def game(key):
        def one(state, _):
            state = env.step(state, env.expert_action(state))
            return state, state.board

        return jax.lax.scan(one, env.reset(key), None, length=6)[1]

    game = lambda seed, play=game: np.asarray(play(jax.random.key(seed)))

    np.testing.assert_array_equal(game(3), game(3))
    assert not np.array_equal(game(3), game(4))


def test_expert_plays_only_legal_moves_over_a_rollout(key):
    env = make()

    @jax.jit
    def rollout(key):
        states = jax.vmap(env.reset)(jax.random.split(key, 32))

        def one(states, _):
            actions = jax.vmap(env.expert_action)(states)
            legal = jax.vmap(jaxgym.is_legal)(states.legal_action_mask, actions)
            states = jax.vmap(env.step)(states, actions)
            return states, (legal | states.done, states.reward)

        return jax.lax.scan(one, states, None, length=60)

    _, (legal, rewards) = rollout(key)
    assert np.asarray(legal).all()
    assert (np.asarray(rewards) >= 0).all()


# ---- settings and hand-made boards ----------------------------------------------------------


@pytest.mark.parametrize("size", [1, 9, "4", True])
def test_bad_sizes_are_rejected(size):
    with pytest.raises(ValueError, match="size"):
        jaxgym.make("2048", size=size)


def test_defaults_and_sizes():
    env = jaxgym.make("2048")
    assert env.size == 4 and env.tile_px == 64 and env.num_actions == 4
    assert env.board_shape == (4, 4) and env.num_tile_types == 30 + 15
    assert jaxgym.make("2048", preset="hard").board_shape == (5, 5)


@pytest.mark.parametrize("value", [-1, 31, 99])
def test_hand_made_boards_must_hold_exponents_in_range(key, value):
    board = np.zeros((4, 4), np.int32)
    board[1, 2] = value
    with pytest.raises(ValueError, match=r"exponents in \[0, 30\]"):
        make().from_board(board, key)


def test_tiles_merged_past_the_hand_limit_are_drawn_and_named(key):
    """Two 2**30 merge into 2**31, past what a hand-made board may hold: the renderer, the host
    text and the device perception all show the new tile (none of them clips it to 2**30)."""
    from policy import rewards, tokenizer

    env = make(2, tile_px=16)
    board = np.array([[30, 30], [0, 0]], np.int32)
    after = jitted_step(2)(env.from_board(board, key), LEFT)
    assert int(after.board[0, 0]) == 31 and float(after.reward) == 2.0**31
    assert text.perception(env, after).startswith("2147483648|")
    reward_fn = rewards.RewardFn(env, tokenizer.default())
    chars, n = jax.jit(reward_fn.perception_chars)(after.board)
    assert "".join(map(chr, np.asarray(chars)[: int(n)])) == text.perception(env, after)
    top, left, bottom, right = render.cell_box(env, 0, 0)
    cells = [np.asarray(render.frame(env, s))[top:bottom, left:right]
             for s in (env.from_board(board, key), after)]  # 2**30, then 2**31
    assert not np.array_equal(cells[0], cells[1])
    np.testing.assert_array_equal(cells[1], env.sprites()[31])


def test_play_from_hand_made_boards_stays_within_the_drawn_tiles(key):
    """num_tile_types bounds every position: 2x2 boards of big random exponents, played by
    random legal moves until they end, never hold a tile past it (nor past power_of_two's
    exact range)."""
    env = make(2)
    keys = jax.random.split(key, 512)
    boards = jax.vmap(lambda k: jax.random.randint(k, (2, 2), 24, 31))(keys)
    states = jax.vmap(env.from_board)(boards, keys)

    def play(state, k):
        state = jax.vmap(env.step)(state, jax.vmap(jaxgym.random_legal_action)(
            jax.random.split(k, 512), state.legal_action_mask))
        return state, jnp.max(state.board)

    states, largest = jax.lax.scan(play, states, jax.random.split(key, 64))
    assert bool(jnp.all(states.terminated))  # every game was played to its end
    assert int(largest.max()) > twenty48.MAX_HAND_EXPONENT  # merging went past the hand limit
    assert int(largest.max()) <= env.num_tile_types <= 127


# ---- text -----------------------------------------------------------------------------------


def test_perception_names_cells_by_value(key):
    state = make().from_board(board_of([[2, 0, 4, 0], [0] * 4, [1024, 2, 0, 0], [0, 0, 0, 65536]]), key)
    assert text.perception(make(), state) == "2|-|4|-\n-|-|-|-\n1024|2|-|-\n-|-|-|65536"
    assert "0 up, 1 right, 2 down, 3 left" in text.prompt(make())


@pytest.mark.parametrize("answer, action", [("0", 0), ("1", 1), (" 2 ", 2), ("3", 3)])
def test_digit_answers_parse(answer, action):
    response = text.response_text("x", "y", answer)
    assert text.parse_answer(make(), response) == action
    assert text.answer_text(make(), action) == answer.strip()


@pytest.mark.parametrize("answer", ["4", "up", "", "12", "-1", "٣", "0 1"])
def test_malformed_answers_are_invalid_and_never_raise(answer):
    assert text.parse_answer(make(), text.response_text("x", "y", answer)) == jaxgym.INVALID_ACTION


@pytest.mark.parametrize("response", [None, "", "3", 3, "<answer>1</answer><answer>2</answer>"])
def test_malformed_responses_are_invalid_and_never_raise(response):
    assert text.parse_answer(make(), response) == jaxgym.INVALID_ACTION


# ---- pixels ---------------------------------------------------------------------------------


def test_atlas_shape_and_empty_sprites():
    env = make(3, tile_px=16)
    atlas = env.sprites()
    assert env.num_tile_types == twenty48.MAX_HAND_EXPONENT + 3 * 3 - 1
    assert atlas.shape == (env.num_tile_types + 2, 16, 16, 3) and atlas.dtype == np.uint8
    np.testing.assert_array_equal(atlas[0], atlas[-1])
    assert len({sprite.tobytes() for sprite in atlas[:-1]}) == atlas.shape[0] - 1


def test_same_value_same_pixels_different_values_different_pixels(key):
    env = make(4, tile_px=24)
    board = np.array([[1, 1, 2, 0], [3, 0, 17, 11], [11, 12, 13, 1], [0, 6, 7, 16]], np.int32)
    frame = np.asarray(jax.jit(lambda s: render.frame(env, s))(env.from_board(board, key)))
    assert frame.shape == render.frame_shape(env) == (96, 96, 3)
    cells = {}
    for r in range(4):
        for c in range(4):
            top, left, bottom, right = render.cell_box(env, r, c)
            cells.setdefault(int(board[r, c]), []).append(frame[top:bottom, left:right])
    for pictures in cells.values():
        for picture in pictures[1:]:
            np.testing.assert_array_equal(picture, pictures[0])
    firsts = [pictures[0].tobytes() for pictures in cells.values()]
    assert len(set(firsts)) == len(firsts)

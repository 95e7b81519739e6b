"""Swap: known positions, properties against the NumPy reference, and the jit/vmap contract."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxgym
from bench import numpy_swap as ref
from jaxgym import chance
from jaxgym.games import swap


def make(rows, cols, colours=3, shapes=2, **kw):
    return jaxgym.make("swap", rows=rows, cols=cols, colours=colours, shapes=shapes, **kw)


def assert_step_matches_reference(env, state, move, after):
    oracle = ref.NumpySwap(env.rows, env.cols, env.colours, env.shapes)
    expected, reward = oracle.step(np.asarray(state.board), move, step_seed(state))
    np.testing.assert_array_equal(after.board, expected)
    assert float(after.reward) == reward


def step_seed(state):
    """The 32-bit seed jaxgym's Swap draws its chance from on this step."""
    return int(chance.seed_from_key(jax.random.split(state.key)[1]))


# ---- known positions -------------------------------------------------------------------------

HORIZONTAL = np.array(
    [
        [3, 4, 5, 3],
        [0, 0, 1, 4],
        [4, 5, 0, 3],
        [5, 3, 4, 5],
    ]
)  # swapping (1, 2) with (2, 2) makes 0 0 0 in row 1


def test_horizontal_run(key):
    env = make(4, 4)
    state = env.from_board(HORIZONTAL, key)
    np.testing.assert_array_equal(state.board, HORIZONTAL)
    action = env.encode_action(1, 2, 2, 2)
    assert state.legal_action_mask[action]
    assert int(swap.swap_gains(state.board)[action]) == 3
    after = env.step(state, action)
    assert float(after.reward) >= 6.0  # 3 cells: 3*2, more only if refills cascade
    assert not np.asarray(swap.find_runs(after.board)).any()
    assert_step_matches_reference(env, state, (1, 2, 2, 2), after)


VERTICAL = np.array(
    [
        [3, 2, 4, 5],
        [4, 2, 5, 3],
        [5, 3, 2, 4],
        [3, 4, 5, 3],
    ]
)  # swapping (2, 1) with (2, 2) makes 2 2 2 in column 1


def test_vertical_run(key):
    env = make(4, 4)
    state = env.from_board(VERTICAL, key)
    action = env.encode_action(2, 2, 2, 1)  # either order
    assert int(action) == int(env.encode_action(2, 1, 2, 2))
    assert int(swap.swap_gains(state.board)[action]) == 3
    after = env.step(state, action)
    assert float(after.reward) >= 6.0
    assert_step_matches_reference(env, state, (2, 1, 2, 2), after)


L_SHAPE = np.array(
    [
        [3, 4, 0, 5, 3],
        [5, 3, 0, 4, 5],
        [0, 0, 1, 0, 4],
        [4, 5, 3, 1, 3],
        [3, 4, 5, 3, 5],
    ]
)  # swapping (2, 2) with (2, 3): row 2 and column 2 both get 0 0 0, sharing (2, 2)


def test_l_shaped_double_run_scores_five_cells_at_once(key):
    env = make(5, 5)
    state = env.from_board(L_SHAPE, key)
    action = env.encode_action(2, 2, 2, 3)
    assert int(swap.swap_gains(state.board)[action]) == 5
    after = env.step(state, action)
    assert float(after.reward) >= 20.0  # 5 cells in one round: 5*4
    assert_step_matches_reference(env, state, (2, 2, 2, 3), after)


CASCADE = np.array(
    [
        [3, 4, 5, 3],
        [1, 5, 3, 4],
        [1, 3, 4, 5],
        [0, 0, 2, 0],
        [1, 4, 5, 3],
    ]
)  # swap (3, 2)<->(3, 3): row 3 clears 0 0 0, then column 0 falls into 1 1 1


def test_cascade_needs_a_second_round(key):
    env = make(5, 4)
    state = env.from_board(CASCADE, key)
    action = env.encode_action(3, 2, 3, 3)
    assert int(swap.swap_gains(state.board)[action]) == 3
    after = env.step(state, action)
    assert float(after.reward) >= 12.0  # 6 for the first round, at least 6 for the second
    assert_step_matches_reference(env, state, (3, 2, 3, 3), after)


def test_swap_that_makes_no_run_changes_nothing(key):
    env = make(4, 4)
    state = env.from_board(HORIZONTAL, key)
    action = env.encode_action(0, 0, 0, 1)
    assert not state.legal_action_mask[action]
    after = env.step(state, action)
    np.testing.assert_array_equal(after.board, HORIZONTAL)
    assert float(after.reward) == -1.0
    np.testing.assert_array_equal(after.legal_action_mask, state.legal_action_mask)
    assert int(after.step_count) == 1


@pytest.mark.parametrize("cells", [(0, 0, 2, 2), (1, 0, 1, 2), (0, 0, 0, 0), (3, 3, 4, 3), (-1, 0, 0, 0)])
def test_non_adjacent_or_off_board_pairs_are_invalid_moves(key, cells):
    env = make(4, 4)
    state = env.from_board(HORIZONTAL, key)
    action = env.encode_action(*cells)
    assert int(action) == jaxgym.INVALID_ACTION
    after = env.step(state, action)
    np.testing.assert_array_equal(after.board, HORIZONTAL)
    assert float(after.reward) == -1.0


@pytest.mark.parametrize("action", [-7, 24, 10**6])
def test_out_of_range_actions_are_invalid_moves(key, action):
    env = make(4, 4)
    state = env.from_board(HORIZONTAL, key)
    after = jax.jit(env.step)(state, action)
    np.testing.assert_array_equal(after.board, HORIZONTAL)
    assert float(after.reward) == -1.0


STUCK = np.array([[0, 1, 2], [3, 0, 1], [2, 3, 0]])  # no run, and no swap makes one


def test_board_with_no_valid_swap_is_reshuffled(key):
    assert not ref.legal_moves(STUCK).any() and not ref.find_runs(STUCK).any()
    env = make(3, 3, colours=2, shapes=2)
    state = env.from_board(STUCK, key)
    board = np.asarray(state.board)
    assert not np.array_equal(board, STUCK)
    assert ref.legal_moves(board).any() and not ref.find_runs(board).any()
    np.testing.assert_array_equal(state.legal_action_mask, ref.legal_moves(board))
    assert not bool(state.terminated)


def test_from_board_rejects_bad_boards(key):
    env = make(4, 4)
    with pytest.raises(ValueError, match="shape"):
        env.from_board(np.zeros((3, 4), int), key)
    with pytest.raises(ValueError, match="tile ids"):
        env.from_board(np.full((4, 4), 9), key)
    with pytest.raises(ValueError, match="run"):
        env.from_board(np.array([[0, 0, 0, 1], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0]]), key)
    with pytest.raises(ValueError, match="integers"):
        env.from_board(np.zeros((4, 4)), key)


def test_action_codes_round_trip():
    env = make(5, 7)
    for action, move in enumerate(ref.all_swaps(5, 7)):
        assert tuple(int(x) for x in env.decode_action(action)) == move
        assert int(env.encode_action(*move)) == action
    assert env.num_actions == len(ref.all_swaps(5, 7))
    assert tuple(int(x) for x in env.decode_action(env.num_actions)) == (-1, -1, -1, -1)


def test_drop_and_refill_keeps_untouched_columns():
    board = jnp.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    cleared = jnp.array([[False, False, False], [False, True, False], [False, True, False]])
    new = jnp.full((3, 3), 0)
    out = np.asarray(swap.drop_and_refill(board, cleared, new))
    np.testing.assert_array_equal(out, [[1, 0, 3], [4, 0, 6], [7, 2, 9]])


# ---- properties ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def jitted(env):
    """(reset, step, expert_action, step seed) compiled once per env, not once per example."""
    seed_of = lambda state: chance.seed_from_key(jax.random.split(state.key)[1])
    return jax.jit(env.reset), jax.jit(env.step), jax.jit(env.expert_action), jax.jit(seed_of)


sizes = st.sampled_from([(3, 3, 2, 2), (4, 4, 2, 2), (5, 6, 3, 2), (8, 8, 4, 3), (3, 7, 2, 3)])


@given(size=sizes, seed=st.integers(0, 2**31 - 1))
def test_trajectories_match_the_numpy_reference(size, seed):
    """Every step: the board and reward equal the reference's, no run remains, ids stay in
    range, the mask is exactly "this swap would score", and the expert's swap scores the most."""
    rows, cols, colours, shapes = size
    env = make(rows, cols, colours, shapes)
    oracle = ref.NumpySwap(rows, cols, colours, shapes)
    reset, step, expert_action, seed_of = jitted(env)
    state = reset(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    for _ in range(6):
        board = np.asarray(state.board)
        assert not ref.find_runs(board).any()
        assert board.min() >= 0 and board.max() < env.num_tile_types
        np.testing.assert_array_equal(state.legal_action_mask, ref.legal_moves(board))
        gains = [ref.first_round_cells(board, m) for m in ref.all_swaps(rows, cols)]
        expert = int(expert_action(state))
        assert state.legal_action_mask[expert] and gains[expert] == max(gains)
        legal = np.flatnonzero(np.asarray(state.legal_action_mask))
        action = int(rng.choice(legal)) if rng.random() < 0.8 else int(rng.integers(env.num_actions))
        move = tuple(int(x) for x in env.decode_action(action))
        expected_board, expected_reward = oracle.step(board, move, int(seed_of(state)))
        state = step(state, action)
        np.testing.assert_array_equal(state.board, expected_board)
        assert float(state.reward) == expected_reward


@given(seed=st.integers(0, 2**31 - 1))
def test_fresh_boards_are_settled_and_playable(seed):
    reset, *_ = jitted(make(6, 6, 2, 2))
    board = np.asarray(reset(jax.random.key(seed)).board)
    assert not ref.find_runs(board).any()
    assert ref.legal_moves(board).any()
    deal_seed = int(chance.seed_from_key(jax.random.split(jax.random.key(seed))[1]))
    np.testing.assert_array_equal(board, ref.NumpySwap(6, 6, 2, 2).deal(deal_seed))


def test_reshuffle_is_a_permutation():
    board = jnp.arange(35).reshape(5, 7)
    for draw in range(5):
        out = np.asarray(swap.reshuffle(board, jnp.uint32(123), draw))
        assert sorted(out.ravel().tolist()) == list(range(35))
        np.testing.assert_array_equal(out, ref.reshuffle(np.arange(35).reshape(5, 7), 123, draw))


# ---- the jit/vmap contract ------------------------------------------------------------------


def _rollout(env, state, n, policy_key):
    """Python loop of random legal moves: the trajectory as a list of states."""
    states = [state]
    step = jax.jit(env.step)
    for key in jax.random.split(policy_key, n):
        action = jaxgym.random_legal_action(key, state.legal_action_mask)
        state = step(state, action)
        states.append(state)
    return states


def test_jit_vmap_and_plain_agree():
    env = make(6, 6, 3, 2)
    keys = jax.random.split(jax.random.key(3), 4)
    plain = [env.reset(k) for k in keys]
    batched = jax.jit(jax.vmap(env.reset))(keys)
    actions = jnp.array([int(jaxgym.random_legal_action(k, s.legal_action_mask)) for k, s in zip(keys, plain)])
    stepped_plain = [env.step(s, a) for s, a in zip(plain, actions)]
    step = jax.jit(env.step)
    stepped_jit = [step(s, a) for s, a in zip(plain, actions)]
    stepped_vmap = jax.jit(jax.vmap(env.step))(batched, actions)
    for i in range(4):
        for a, b, c in zip(
            jax.tree.leaves(stepped_plain[i]), jax.tree.leaves(stepped_jit[i]), jax.tree.leaves(stepped_vmap)
        ):
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b, c = (jax.random.key_data(x) for x in (a, b, c))
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c[i])


def test_same_key_same_trajectory_different_keys_different_boards():
    env = make(6, 6, 3, 2)
    one = _rollout(env, env.reset(jax.random.key(1)), 5, jax.random.key(9))
    again = _rollout(env, env.reset(jax.random.key(1)), 5, jax.random.key(9))
    for a, b in zip(one, again):
        np.testing.assert_array_equal(a.board, b.board)
        assert float(a.reward) == float(b.reward)
    boards = {np.asarray(env.reset(jax.random.key(k)).board).tobytes() for k in range(8)}
    assert len(boards) == 8


def test_step_compiles_once_for_a_batch():
    env = make(5, 5, 2, 2)
    traces = []

    @jax.jit
    def step(state, action):
        traces.append(1)
        return jax.vmap(env.step)(state, action)

    state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 8))
    for i in range(3):
        state = step(state, jnp.full((8,), i, jnp.int32))
    assert len(traces) == 1


@given(seed=st.integers(0, 2**31 - 1))
def test_gravity_leaves_columns_without_removal_unchanged(seed):
    rng = np.random.default_rng(seed)
    board = rng.integers(0, 6, (6, 5))
    cleared = rng.random((6, 5)) < 0.2
    new_tiles = rng.integers(0, 6, (6, 5))
    out = np.asarray(swap.drop_and_refill(jnp.asarray(board), jnp.asarray(cleared), jnp.asarray(new_tiles)))
    for c in range(5):
        kept = board[~cleared[:, c], c]
        n_new = 6 - len(kept)
        np.testing.assert_array_equal(out[n_new:, c], kept)  # survivors keep their order, at the bottom
        np.testing.assert_array_equal(out[:n_new, c], new_tiles[:n_new, c])
        if n_new == 0:
            np.testing.assert_array_equal(out[:, c], board[:, c])

"""Conformance checks for any `Env`: the contract every game (a third-party one too) must keep.

    from jaxgym.testing import check_env, check_game
    check_env(jaxgym.make("swap", preset="easy"))    # one setting
    check_game("swap")                               # every preset of a registered game
    python -m jaxgym.testing                         # every game, every preset (minutes)

Each check raises AssertionError saying what broke. They play whole episodes under `jit` and
`vmap` (to the end, and one step past it), compare jit, vmap and plain calls, rebuild dealt
boards with `from_board`, run `AutoReset`, and check the text side (the expert's answer parses
back to it; malformed answers are invalid and never raise) and the sprites (one per value a
board holds). Drawing frames from the sprites is `render`'s business and is checked there.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import text
from jaxgym.core import (INVALID_ACTION, Env, PairEnv, State, is_legal, list_games, make,
                         random_legal_action)
from jaxgym.wrappers import AutoReset

MALFORMED_ANSWERS = (
    None, 3, b"<answer>1</answer>", "", "<answer></answer>", "<answer>(0, 0)</answer>",
    "<answer>(0, 0) (0, 1)</answer><answer>(0, 0) (0, 1)</answer>", "<answer>-1</answer>",
    "<answer>(99999, 0) (0, 0)</answer>", "<answer>up</answer>",
    "</answer>(0, 0) (0, 1)<answer>", "<answer>\u0661</answer>",
    "<answer>(0, 0) (0, 1)" + "x" * 10_000 + "</answer>",
)


def check_game(name: str, boards: int = 4, max_moves: int = 64,
               played: tuple[str, ...] | None = None) -> None:
    """`check_env` at every preset of the registered game `name`. `played`: the presets that
    get every check; the others get only those of dealt boards and their text (the suite
    plays only `easy`, since big boards compile slowly). Default: all."""
    for preset in list_games()[name]:
        play = played is None or preset in played
        check_env(make(name, preset=preset), boards=boards, max_moves=max_moves, play=play)


def check_env(env: Env, boards: int = 4, max_moves: int = 64, seed: int = 0,
              play: bool = True) -> None:
    """Every check below on `boards` boards; episodes are truncated at `max_moves` moves (unless
    the env's own `max_steps` is smaller) so that games without an end (Swap) end too.
    `play=False` keeps only the checks of dealt boards and their text (no step is compiled)."""
    if not 0 < env.max_steps <= max_moves:
        env = dataclasses.replace(env, max_steps=max_moves)
    key = jax.random.key(seed)
    jitted = Jitted(env, boards)
    states = jitted.resets(jax.random.split(key, boards))
    check_state(env, states, boards)
    check_text(env, states, jitted)
    check_sprites(env, states)
    if play:
        check_moves(env, jax.tree.map(lambda x: x[0], states), jitted)
        check_from_board(env, states)
        check_jit_vmap_and_plain_agree(env, states, jitted)
        check_episodes(env, key, jitted)
        check_auto_reset(env, states, jitted)


class Jitted:
    """The env's functions over batches of `boards` states, compiled once and shared by the
    checks."""

    def __init__(self, env: Env, boards: int):
        self.boards = boards
        self.steps = jax.jit(jax.vmap(env.step))
        self.resets = jax.jit(jax.vmap(env.reset))
        self.auto_reset_steps = jax.jit(AutoReset(env).step)
        self.experts = jax.jit(jax.vmap(env.expert_action))
        self.random_moves = jax.jit(jax.vmap(random_legal_action))


def check_state(env: Env, states: State, boards: int) -> None:
    """Fields, shapes and dtypes of a batch of fresh states."""
    rows, cols = env.board_shape
    expected = dict(board=((boards, rows, cols), jnp.int32), step_count=((boards,), jnp.int32),
                    reward=((boards,), jnp.float32), terminated=((boards,), jnp.bool_),
                    truncated=((boards,), jnp.bool_),
                    legal_action_mask=((boards, env.num_actions), jnp.bool_))
    for field, (shape, dtype) in expected.items():
        value = getattr(states, field)
        assert value.shape == shape and value.dtype == dtype, (
            f"{env.name}: State.{field} is {value.dtype}{list(value.shape)}, expected "
            f"{jnp.dtype(dtype)}{list(shape)}")
    assert np.all(np.asarray(states.step_count) == 0) and np.all(np.asarray(states.reward) == 0)
    assert np.array_equal(np.asarray(states.terminated),
                          ~np.asarray(states.legal_action_mask).any(-1)), (
        f"{env.name}: a fresh board is terminated exactly when no move is legal")


def check_moves(env: Env, state: State, jitted: Jitted) -> None:
    """Legal moves score >= 0; illegal ones (INVALID_ACTION and out-of-range ids included)
    score -1 and leave the board as it was. Each batch of moves is one call of the batched
    step on copies of `state`."""
    mask = np.asarray(state.legal_action_mask)
    legal = list(np.flatnonzero(mask))
    illegal = list(np.flatnonzero(~mask)) + [INVALID_ACTION, env.num_actions]
    boards = jitted.boards
    copies = jax.tree.map(lambda x: jnp.repeat(x[None], boards, 0), state)
    for actions, is_legal_move in ((legal, True), (illegal[:boards - 2] + illegal[-2:], False)):
        if not actions:
            continue
        actions = np.resize(np.asarray(actions, np.int32), boards)
        after = jitted.steps(copies, jnp.asarray(actions))
        reward = np.asarray(after.reward)
        if is_legal_move:
            assert np.all(reward >= 0), f"{env.name}: a legal action scored below 0: {reward}"
            assert np.all(np.asarray(after.step_count) == 1)
        else:
            bad = actions[reward != -1.0]
            assert bad.size == 0, f"{env.name}: illegal actions {bad} did not score -1"
            unchanged = np.all(np.asarray(after.board) == np.asarray(state.board), axis=(1, 2))
            assert unchanged.all(), (
                f"{env.name}: illegal actions {actions[~unchanged]} changed the board")


def check_episodes(env: Env, key: jax.Array, jitted: Jitted) -> None:
    """Random legal play to the end of every episode, twice from the same key (same boards,
    rewards and ends) and once from another; then one step past the end changes nothing."""
    boards = jitted.boards

    @jax.jit
    def play(key):
        states = dealt = jax.vmap(env.reset)(jax.random.split(key, boards))

        def move(carry, k):
            states, total = carry
            actions = jax.vmap(random_legal_action)(jax.random.split(k, boards),
                                                    states.legal_action_mask)
            states = jax.vmap(env.step)(states, actions)
            return (states, total + states.reward), states.done

        keys = jax.random.split(jax.random.fold_in(key, 1), env.max_steps + 1)
        (states, total), done = jax.lax.scan(move, (states, jnp.zeros(boards)), keys)
        return states, total, done, dealt.board

    first, again, other = play(key), play(key), play(jax.random.fold_in(key, 2))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        assert np.array_equal(_values(a), _values(b)), f"{env.name}: same key, other play"
    states, total, done, dealt = first
    assert np.asarray(states.done).all(), f"{env.name}: an episode did not end in max_steps moves"
    assert np.isfinite(np.asarray(total)).all(), f"{env.name}: a return is not finite"
    done = np.asarray(done)
    assert np.all(done[1:] >= done[:-1]), f"{env.name}: an episode came back to life"
    assert np.all(np.asarray(states.step_count) <= env.max_steps)
    assert not np.array_equal(np.asarray(dealt), np.asarray(other[3])), (
        f"{env.name}: another key dealt the same boards")
    past = jitted.steps(states, jnp.zeros(boards, jnp.int32))
    assert np.array_equal(np.asarray(past.board), np.asarray(states.board)), (
        f"{env.name}: stepping a finished episode changed its board")
    assert np.all(np.asarray(past.reward) == 0) and np.array_equal(
        np.asarray(past.step_count), np.asarray(states.step_count))


def _values(x: jax.Array) -> np.ndarray:
    """x on the host; a PRNG key as its key data."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def check_jit_vmap_and_plain_agree(env: Env, states: State, jitted: Jitted) -> None:
    """step: the call on one board and the jitted, vmapped call on the batch give the same
    state."""
    actions = jitted.experts(states)
    batched = jitted.steps(states, actions)
    step = jax.jit(env.step)
    for i in range(min(2, actions.shape[0])):
        eager = step(jax.tree.map(lambda x: x[i], states), actions[i])
        for field in ("board", "reward", "terminated", "legal_action_mask", "key"):
            assert np.array_equal(_values(getattr(eager, field)),
                                  _values(getattr(batched, field)[i])), (
                f"{env.name}: {field} differs between the eager and the jitted, vmapped step")


def check_from_board(env: Env, states: State) -> None:
    """A dealt board rebuilt by `from_board` plays like the original; boards of the wrong
    shape or dtype raise ValueError."""
    board = np.asarray(states.board[0])
    rebuilt = jax.jit(env.from_board)(board, jax.random.key(7))  # eager settling is slow
    assert np.array_equal(np.asarray(rebuilt.board), board), (
        f"{env.name}: from_board changed a board the game itself dealt")
    assert np.array_equal(np.asarray(rebuilt.legal_action_mask),
                          np.asarray(states.legal_action_mask[0]))
    for bad in (board[:-1], board.astype(np.float32)):
        try:
            env.from_board(bad, jax.random.key(7))
        except ValueError:
            continue
        raise AssertionError(f"{env.name}: from_board took a {bad.dtype}{list(bad.shape)} board")


def check_auto_reset(env: Env, states: State, jitted: Jitted) -> None:
    """`AutoReset` deals a fresh board exactly where an episode ended (here: boards one move
    before `max_steps`, and every other board live), keeping that move's reward and flags."""
    boards = states.board.shape[0]
    ending = np.arange(boards) % 2 == 0
    counts = np.where(ending, env.max_steps - 1, 0).astype(np.int32)
    states = states.replace(step_count=jnp.asarray(counts))
    actions = jitted.random_moves(jax.random.split(jax.random.key(3), boards),
                                  states.legal_action_mask)
    moved = jitted.steps(states, actions)
    after = jitted.auto_reset_steps(states, actions)
    ended = np.asarray(moved.done)
    assert np.array_equal(np.asarray(after.done), ended) and ended[ending].all()
    assert np.array_equal(np.asarray(after.reward), np.asarray(moved.reward)), (
        f"{env.name}: AutoReset lost the reward of the move that ended an episode")
    fresh = jitted.resets(jax.vmap(lambda k: jax.random.split(k)[0])(moved.key))
    expected = np.where(ended[:, None, None], np.asarray(fresh.board), np.asarray(moved.board))
    assert np.array_equal(np.asarray(after.board), expected), (
        f"{env.name}: AutoReset did not deal a fresh board exactly where an episode ended")
    assert np.array_equal(np.asarray(after.step_count),
                          np.where(ended, 0, np.asarray(moved.step_count)))


def check_text(env: Env, states: State, jitted: Jitted) -> None:
    """The expert's moves are legal and their answer text parses back to them; malformed
    answers are invalid and never raise; perception text describes the board."""
    experts = jitted.experts(states)
    live = ~np.asarray(states.terminated)
    legal = np.asarray(jax.vmap(is_legal)(states.legal_action_mask, experts))
    assert legal[live].all(), f"{env.name}: the expert chose an illegal move"
    for action in np.asarray(experts)[live]:
        response = text.response_text("", "", text.answer_text(env, action))
        assert text.parse_answer(env, response) == int(action), (
            f"{env.name}: the answer {text.answer_text(env, action)!r} does not parse back")
    for response in MALFORMED_ANSWERS:
        assert text.parse_answer(env, response) == INVALID_ACTION, (
            f"{env.name}: {str(response)[:40]!r} parsed as a move")
        assert text.format_ok(response) is False
    rows = text.describe_board(env, np.asarray(states.board[0])).split("\n")
    assert len(rows) == env.board_shape[0], f"{env.name}: perception has one line per row"
    for board, action in zip(np.asarray(states.board)[live], np.asarray(experts)[live]):
        reason = text.rationale(env, board, action)
        assert isinstance(reason, str) and reason, f"{env.name}: the rationale is empty"
    assert isinstance(env, PairEnv) or env.num_actions <= 10, (
        f"{env.name}: a game that answers with one digit can have at most 10 actions; "
        "subclass PairEnv to answer with two cells")


def check_sprites(env: Env, states: State) -> None:
    """`env.sprites()` holds one tile_px x tile_px RGB sprite per value a board can hold, then
    the empty cell, and the same sprites each time."""
    atlas = env.sprites()
    px = env.tile_px
    assert isinstance(atlas, np.ndarray) and atlas.dtype == np.uint8, (
        f"{env.name}: sprites() must return a uint8 NumPy array")
    assert atlas.ndim == 4 and atlas.shape[1:] == (px, px, 3), (
        f"{env.name}: sprites() must have shape [n, {px}, {px}, 3], got {atlas.shape}")
    assert len(atlas) >= env.num_tile_types + 1, (
        f"{env.name}: {len(atlas)} sprites for {env.num_tile_types} tile types and the empty cell")
    boards = np.asarray(states.board)
    assert boards.max() < len(atlas) - 1, f"{env.name}: a board holds a value with no sprite"
    assert np.array_equal(env.sprites(), atlas), f"{env.name}: sprites() changed between calls"


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Every conformance check at every preset.")
    parser.add_argument("games", nargs="*", help="registered games (default: all)")
    args = parser.parse_args(argv)
    for name in args.games or sorted(list_games()):
        started = time.time()
        check_game(name)
        print(f"{name}: every preset passed ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

"""Per-board control flow whose cost, under `vmap`, follows the boards that need it.

`while_loop`: a loop whose rounds cost what the boards still running need.

`jax.lax.while_loop` under `vmap` runs every board for as many rounds as the slowest one needs,
computing the body for all of them and keeping the results of those still running. Swap's
cascades and re-deals are like that: on the paper's 8x8 board, after a random move a sizeable
share of the boards has no valid swap left and is re-dealt, a few of them several times.
`while_loop` here has the same meaning for one board, and its batching rule packs the boards
still running into the smallest of a few fixed buffer sizes (1/64, 1/16, 1/4, 1/2 of the
batch, or all of it) before each round, so a round with few boards left costs little. Boards
come out exactly as from `lax.while_loop`.

`select_rarely`: a slow exact path that few boards need (a hand-made Shisen-Sho board with
more tiles of a type than the deal gives), computed only when some board of the batch needs it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

BUFFER_SHARES = (64, 16, 4, 2)  # a round runs on 1/64, 1/16, 1/4, 1/2 or all of the batch
MIN_BUFFER = 16  # smaller buffers save little and cost compile time (small test batches)


def while_loop(cond: Callable[[Any, Any], jax.Array], body: Callable[[Any, Any], Any],
               carry: Any, operands: Any = ()) -> Any:
    """`lax.while_loop` of `cond(operands, carry)` and `body(operands, carry)` for one board.

    `operands` holds the arrays the loop reads but does not change (a board's seed); pass them
    here rather than closing over them, so the batching rule can pack them with the carry.
    """

    @custom_vmap
    def loop(operands, carry):
        return jax.lax.while_loop(lambda c: cond(operands, c), lambda c: body(operands, c), carry)

    @loop.def_vmap
    def packed(axis_size, in_batched, operands, carry):
        operands, carry = _all_batched(axis_size, in_batched, (operands, carry))
        carry = _packed_while(jax.vmap(cond), jax.vmap(body), operands, carry, axis_size)
        return carry, jax.tree.map(lambda _: True, carry)

    return loop(operands, carry)


def select_rarely(flag: jax.Array, rare: Callable[[Any], Any], operands: Any,
                  common: Any) -> Any:
    """`rare(operands)` if `flag` else `common`, for one board. Under vmap `rare` runs (on the
    whole batch) only when some board's `flag` is set, instead of always as with `jnp.where`."""

    @custom_vmap
    def choose(flag, operands, common):
        return jax.lax.cond(flag, lambda: rare(operands), lambda: common)

    @choose.def_vmap
    def batched(axis_size, in_batched, flag, operands, common):
        flag, operands, common = _all_batched(axis_size, in_batched, (flag, operands, common))
        some = lambda: _where_rows(flag, jax.vmap(rare)(operands), common)
        chosen = jax.lax.cond(jnp.any(flag), some, lambda: common)
        return chosen, jax.tree.map(lambda _: True, chosen)

    return choose(flag, operands, common)


def _buffer_sizes(batch: int) -> list[int]:
    return sorted({batch // share for share in BUFFER_SHARES if batch // share >= MIN_BUFFER}
                  | {batch})


def _packed_while(cond, body, operands, carry, batch: int):
    """The batched loop: while any board runs, a round of `body` on the running boards,
    gathered into the smallest buffer that holds them and scattered back."""
    sizes = _buffer_sizes(batch)

    def on_all(carry, running):
        carry = _where_rows(running, body(operands, carry), carry)
        return carry, running & cond(operands, carry)

    def on_buffer(size):
        def round_(carry, running):
            index = _first_indices(running, size)
            used = jnp.arange(size) < jnp.sum(running)
            target = jnp.where(used, index, batch)  # out of range: dropped by the scatter
            packed_operands, packed_carry = jax.tree.map(lambda x: x[index], (operands, carry))
            moved = body(packed_operands, packed_carry)
            carry = jax.tree.map(lambda x, new: x.at[target].set(new, mode="drop"), carry, moved)
            still = cond(packed_operands, moved) & used
            return carry, jnp.zeros(batch, bool).at[target].set(still, mode="drop")
        return round_

    rounds = [on_buffer(size) if size < batch else on_all for size in sizes]

    def one_round(state):
        carry, running = state
        tier = jnp.searchsorted(jnp.asarray(sizes), jnp.sum(running))  # smallest size >= running
        return jax.lax.switch(tier, rounds, carry, running)

    running = cond(operands, carry)
    carry, _ = jax.lax.while_loop(lambda state: jnp.any(state[1]), one_round, (carry, running))
    return carry


def _first_indices(flag: jax.Array, size: int) -> jax.Array:
    """int32[size]: the indices of the first `size` True entries of bool[batch], then zeros
    (`jnp.nonzero(flag, size=size, fill_value=0)`, whose cumsum costs 8x more on the CPU)."""
    slot = jax.lax.associative_scan(jnp.add, flag.astype(jnp.int32)) - 1
    target = jnp.where(flag, slot, size)  # out of range: dropped
    every = jnp.arange(flag.shape[0], dtype=jnp.int32)
    return jnp.zeros(size, jnp.int32).at[target].set(every, mode="drop")


def _all_batched(axis_size: int, in_batched, trees):
    """The custom_vmap rule's arguments with every leaf batched (unbatched ones broadcast)."""
    return tuple(
        jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *x.shape)),
                     tree, batched)
        for tree, batched in zip(trees, in_batched))


def _where_rows(flag: jax.Array, new: Any, old: Any) -> Any:
    """Per board (leading axis), the leaves of `new` where bool[batch] `flag`, else `old`."""
    return jax.tree.map(
        lambda a, b: jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - 1)), a, b), new, old)

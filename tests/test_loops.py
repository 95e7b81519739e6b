"""jaxgym.loops.while_loop: the meaning of lax.while_loop per board, batched or not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgym import loops


def collatz(limit, carry):
    """A loop whose trip count varies a lot from board to board."""
    value, steps = carry
    return (value != 1) & (steps < limit)


def collatz_step(limit, carry):
    value, steps = carry
    return jnp.where(value % 2 == 0, value // 2, 3 * value + 1), steps + 1


def reference(values, limit):
    return jax.vmap(lambda v, l: jax.lax.while_loop(
        lambda c: collatz(l, c), lambda c: collatz_step(l, c), (v, jnp.int32(0))))(values, limit)


@pytest.mark.parametrize("batch", [1, 3, 9, 300, 1100])
def test_batched_loop_matches_lax(batch):
    values = jnp.arange(1, batch + 1, dtype=jnp.int32) * 7
    limit = jnp.where(jnp.arange(batch) % 5 == 0, 3, 1000).astype(jnp.int32)
    run = jax.jit(jax.vmap(lambda v, l: loops.while_loop(collatz, collatz_step, (v, jnp.int32(0)), l)))
    got, want = run(values, limit), reference(values, limit)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    if batch >= 300:  # packed into buffers of batch // 8 (and batch // 64 at 1100)
        assert loops._buffer_sizes(batch)[0] < batch
        assert int(want[1].max()) > 3 * int(np.median(np.asarray(want[1])))


def test_unbatched_operands_and_one_board():
    values = jnp.arange(1, 101, dtype=jnp.int32)
    limit = jnp.int32(1000)
    got = jax.vmap(lambda v: loops.while_loop(collatz, collatz_step, (v, jnp.int32(0)), limit))(values)
    np.testing.assert_array_equal(got[1], reference(values, jnp.full(100, 1000, jnp.int32))[1])
    one = loops.while_loop(collatz, collatz_step, (jnp.int32(27), jnp.int32(0)), limit)
    assert int(one[1]) == 111  # 27 takes 111 steps to reach 1


def test_nested_vmap():
    values = jnp.arange(1, 61, dtype=jnp.int32).reshape(6, 10)
    limit = jnp.int32(1000)
    run = jax.jit(jax.vmap(jax.vmap(
        lambda v: loops.while_loop(collatz, collatz_step, (v, jnp.int32(0)), limit))))
    got = run(values)[1]
    want = reference(values.ravel(), jnp.full(60, 1000, jnp.int32))[1].reshape(6, 10)
    np.testing.assert_array_equal(got, want)


def test_select_rarely_picks_per_board():
    rare = lambda x: x * 100
    values = jnp.arange(8, dtype=jnp.int32)
    for flags in (jnp.zeros(8, bool), jnp.arange(8) % 3 == 0):
        got = jax.jit(jax.vmap(lambda f, v: loops.select_rarely(f, rare, v, v + 1)))(flags, values)
        np.testing.assert_array_equal(got, np.where(flags, values * 100, values + 1))
    assert int(loops.select_rarely(jnp.bool_(True), rare, jnp.int32(3), jnp.int32(0))) == 300
    assert int(loops.select_rarely(jnp.bool_(False), rare, jnp.int32(3), jnp.int32(0))) == 0

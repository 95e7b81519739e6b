"""The sampler: determinism, greedy = argmax, stop at end of turn, compiled once, log-probs equal
a full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from policy import model as vlm, sample

CFG = vlm.config("tiny", vocab_size=64, width=32, depth=2, heads=4, kv_heads=2, mlp_width=64,
                 vision_width=16, vision_depth=1, vision_heads=1, vision_mlp=32)
MODEL = vlm.create(CFG, 5, seed=0)
GRAPHDEF, PARAMS = nnx.split(MODEL)
B, P, T, N = 3, 5, 10, 12
FRAMES = jax.random.randint(jax.random.key(1), (B, 64, 64, 3), 0, 256).astype(jnp.uint8)
# two instruction prefixes (the first left-padded); sequences 0 and 2 follow prefix 1
PREFIX = jax.random.randint(jax.random.key(3), (2, P), 6, 64)
PREFIX_VALID = jnp.ones((2, P), bool).at[0, :2].set(False)
GROUP = jnp.array([1, 0, 1])
TOKENS = jax.random.randint(jax.random.key(2), (B, T), 6, 64).at[:, 1:5].set(5)
VALID = jnp.ones((B, T), bool).at[0, :2].set(False)  # the first sequence's part is left-padded
PROMPT = sample.Prompt(PREFIX, PREFIX_VALID, TOKENS, VALID, GROUP)
EOS, PAD = 3, 0


def generate(key, temperature=1.0, top_p=1.0, top_k=0, eos=EOS, prompt=PROMPT):
    return sample.generate(GRAPHDEF, PARAMS, prompt, FRAMES, key, temperature, top_p,
                           max_new_tokens=N, top_k=top_k, eos_id=eos, pad_id=PAD)


def test_same_key_same_samples_and_other_key_other_samples():
    a, b = generate(jax.random.key(7)), generate(jax.random.key(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = generate(jax.random.key(8))
    assert not np.array_equal(a.tokens, c.tokens)


def test_temperature_zero_is_the_argmax_of_the_full_model():
    greedy = generate(jax.random.key(0), temperature=0.0, eos=-1)
    # one full forward pass over prompt + greedy tokens: by causality the logits at each
    # position depend only on the prefix, so each greedy token must be their argmax
    tokens = jnp.concatenate([PREFIX[GROUP], TOKENS, greedy.tokens], axis=1)
    valid = jnp.concatenate([PREFIX_VALID[GROUP], VALID, jnp.ones(greedy.tokens.shape, bool)], 1)
    logits = jax.jit(lambda t, v: MODEL(t, FRAMES, v))(tokens, valid)[:, P + T - 1:-1]
    np.testing.assert_array_equal(jnp.argmax(logits, -1), greedy.tokens)
    np.testing.assert_array_equal(generate(jax.random.key(1), top_k=1, eos=-1).tokens,
                                  greedy.tokens)


def test_logprobs_equal_a_full_forward_pass():
    s = generate(jax.random.key(3))
    full = sample.score(GRAPHDEF, PARAMS, PROMPT, FRAMES, s.tokens)
    np.testing.assert_allclose(jnp.where(s.mask, full, 0), s.logprobs, atol=1e-4)


def test_one_shared_prefix_samples_as_the_same_prefix_per_sequence():
    shared = PROMPT._replace(prefix=PREFIX[1:], prefix_valid=PREFIX_VALID[1:],
                             group=jnp.zeros(B, jnp.int32))
    each = PROMPT._replace(group=jnp.ones(B, jnp.int32))
    a, b = generate(jax.random.key(4), prompt=shared), generate(jax.random.key(4), prompt=each)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_stops_at_end_of_turn():
    greedy = generate(jax.random.key(0), temperature=0.0, eos=-1)
    eos = int(greedy.tokens[0, 2])  # make the third greedy token the end of turn
    s = generate(jax.random.key(0), temperature=0.0, eos=eos)
    row, mask = np.asarray(s.tokens[0]), np.asarray(s.mask[0])
    first = int(np.flatnonzero(row == eos)[0])
    assert first <= 2 and mask[: first + 1].all() and not mask[first + 1:].any()
    assert (row[first + 1:] == PAD).all() and (np.asarray(s.logprobs[0])[first + 1:] == 0).all()


def test_compiled_once_for_new_keys_and_temperatures():
    generate(jax.random.key(0), temperature=0.7)
    before = sample.generate._cache_size()
    generate(jax.random.key(5), temperature=0.3, top_p=0.9)
    generate(jax.random.key(6), temperature=0.0)
    assert sample.generate._cache_size() == before


def test_filter_logits_keeps_top_k_and_the_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(sample.filter_logits(logits, 2, jnp.float32(1.0))).tolist() == [
        [True, True, False, False]]
    assert np.isfinite(sample.filter_logits(logits, 0, jnp.float32(0.7))).tolist() == [
        [True, True, False, False]]
    assert np.isfinite(sample.filter_logits(logits, 0, jnp.float32(1.0))).all()


def test_choose_draws_from_the_filtered_distribution():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05, 0.0]]))  # the last id is impossible
    keys = jax.random.split(jax.random.key(0), 20_000)
    draw = jax.jit(jax.vmap(lambda k, top_k, top_p: sample.choose(k, logits, 1.0, top_k, top_p)[0],
                            in_axes=(0, None, None)), static_argnums=1)
    counts = np.bincount(np.asarray(draw(keys, 0, 1.0)), minlength=5) / len(keys)
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05, 0.0], atol=0.015)
    counts = np.bincount(np.asarray(draw(keys, 2, 1.0)), minlength=5) / len(keys)  # top 2
    np.testing.assert_allclose(counts, [0.625, 0.375, 0, 0, 0], atol=0.015)
    counts = np.bincount(np.asarray(draw(keys, 0, 0.7)), minlength=5) / len(keys)  # nucleus
    np.testing.assert_allclose(counts, [0.625, 0.375, 0, 0, 0], atol=0.015)

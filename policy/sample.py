"""Batched generation on the device: one prefill over the prompts, then a key/value-cached decode
loop under `jax.lax.scan`, with temperature, top-k and top-p, stopping each sequence at its end of
turn. Shapes are fixed (`max_new_tokens` steps always run; finished sequences emit padding), and
`generate` is jitted once here, so calls with the same shapes and settings never re-trace.

    samples = generate(graphdef, params, prompt, frames, key, max_new_tokens=96,
                       eos_id=tok.eos_id, pad_id=tok.pad_id)
    samples.tokens   int32[B, N]   sampled ids (pad after the end of turn)
    samples.logprobs float32[B, N] log-prob of each sampled id under the model (temperature 1)
    samples.mask     bool[B, N]    True up to and including the end-of-turn token

A `Prompt` keeps the instructions, which all boards of a game share, apart from each board's
image part: the model encodes the instructions once per batch and every sequence attends to them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class Prompt(NamedTuple):
    """What comes before the responses. prefix: int32[G, P] the instructions of G games,
    left-padded under prefix_valid: bool[G, P]; tokens: int32[B, T] each sequence's own part
    (the image placeholders and the turn change), left-padded under valid: bool[B, T];
    group: int32[B] which prefix row each sequence follows."""

    prefix: jax.Array
    prefix_valid: jax.Array
    tokens: jax.Array
    valid: jax.Array
    group: jax.Array

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]


class Samples(NamedTuple):
    tokens: jax.Array  # int32[B, N]
    logprobs: jax.Array  # float32[B, N]
    mask: jax.Array  # bool[B, N]


def filter_logits(logits: jax.Array, top_k: int, top_p: jax.Array) -> jax.Array:
    """Set to -inf every logit outside the top-k (top_k=0: keep all) and outside the smallest
    set of most likely ids whose probability reaches top_p (top_p=1: keep all; ties with the
    last kept logit are kept too). logits: float32[B, V]."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.lax.cond(jnp.all(top_p >= 1.0), lambda x: x, lambda x: _nucleus(x, top_p), logits)


def _nucleus(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    sorted_logits = -jnp.sort(-logits, axis=-1)
    sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the more likely ids
    kept = jnp.sum(before < top_p, axis=-1, keepdims=True)  # >= 1: the top id always stays
    cutoff = jnp.take_along_axis(sorted_logits, kept - 1, axis=-1)
    return jnp.where(logits >= cutoff, logits, -jnp.inf)


def choose(key: jax.Array, logits: jax.Array, temperature: jax.Array, top_k: int,
           top_p: jax.Array) -> jax.Array:
    """int32[B]: a sample from softmax(logits / temperature) after top-k/top-p filtering; the
    argmax when temperature is 0.

    Sampled by inverting the cumulative distribution with one uniform number per row (the
    first id whose cumulative probability reaches u * total), which draws B random numbers a
    step instead of the B x vocab Gumbel noise of `jax.random.categorical`: the same
    distribution, a cheaper step on the CPU. Filtered ids have probability 0, so they are never
    the first to reach u * total > 0."""
    scaled = filter_logits(logits / jnp.maximum(temperature, 1e-6), top_k, top_p)
    cumulative = jnp.cumsum(jax.nn.softmax(scaled, axis=-1), axis=-1)
    u = 1.0 - jax.random.uniform(key, (logits.shape[0], 1))  # (0, 1]
    sampled = jnp.sum(cumulative < u * cumulative[:, -1:], axis=-1)
    sampled = jnp.minimum(sampled, logits.shape[-1] - 1)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "eos_id",
                                             "pad_id"))
def generate(graphdef: nnx.GraphDef, params: nnx.State, prompt: Prompt, frames: jax.Array,
             key: jax.Array, temperature: float | jax.Array = 1.0,
             top_p: float | jax.Array = 1.0, *, max_new_tokens: int, top_k: int = 0,
             eos_id: int, pad_id: int) -> Samples:
    """Sample `max_new_tokens` tokens after each prompt.

    graphdef, params: `nnx.split(model)`; prompt: a `Prompt` of B sequences; frames:
    uint8[B, H, W, 3]; key: a PRNG key."""
    model = nnx.merge(graphdef, params)
    prefix = model.encode_prefix(prompt.prefix, prompt.prefix_valid)
    logits, cache = model.prefill(prompt.tokens, frames, prompt.valid,
                                  prompt.tokens.shape[1] + max_new_tokens, prefix, prompt.group)
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p = jnp.asarray(top_p, jnp.float32)

    def step(carry, step_key):
        logits, cache, done = carry
        token = choose(step_key, logits, temperature, top_k, top_p)
        logprob = chosen_logprobs(logits, token)
        live = ~done
        token = jnp.where(live, token, pad_id)
        done = done | (token == eos_id)
        next_logits, cache = model.decode(token, cache)
        return (next_logits, cache, done), (token, jnp.where(live, logprob, 0.0), live)

    done = jnp.zeros(prompt.batch, bool)
    keys = jax.random.split(key, max_new_tokens)
    _, (tokens, logprobs, mask) = jax.lax.scan(step, (logits, cache, done), keys)
    return Samples(tokens.T, logprobs.T, mask.T)


def token_logprobs(model: nnx.Module, prompt: Prompt, frames: jax.Array,
                   response: jax.Array) -> jax.Array:
    """float32[B, N]: log-prob of each response token given the prompt and the response before
    it, by one forward pass over the sequences' own tokens after the shared instructions (what
    training scores; equals `generate`'s log-probs)."""
    prefix = model.encode_prefix(prompt.prefix, prompt.prefix_valid)
    tokens = jnp.concatenate([prompt.tokens, response], axis=1)
    valid = jnp.concatenate([prompt.valid, jnp.ones(response.shape, bool)], axis=1)
    logits = model(tokens, frames, valid, prefix, prompt.group)[:, prompt.tokens.shape[1] - 1:-1]
    return chosen_logprobs(logits, response)


def chosen_logprobs(logits: jax.Array, ids: jax.Array) -> jax.Array:
    """float32[...]: the log-prob of each of `ids` (int32[...]) under `logits` [..., vocab]."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits), ids[..., None], -1)[..., 0]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def score(graphdef: nnx.GraphDef, params: nnx.State, prompt: Prompt, frames: jax.Array,
          response: jax.Array) -> jax.Array:
    """`token_logprobs` of a split model, jitted (once per shapes): float32[B, N]."""
    return token_logprobs(nnx.merge(graphdef, params), prompt, frames, response)

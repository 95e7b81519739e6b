"""The GRPO update (Group Relative Policy Optimisation, as the G1 paper trains): n sampled
responses per board, advantages normalised within each board's group, a clipped ratio loss and a
KL penalty to a frozen reference, averaged over response tokens.

    update = make_update(graphdef, optimizer(cfg), cfg)
    params, opt_state, metrics = update(params, opt_state, ref_params, batch)

`batch` is a `Rollout` of B boards x n samples, flattened board-major (the n samples of board i
are rows i*n .. i*n+n-1). The update is one jitted function. It scores the batch under the
frozen reference once (not at all when `kl_coef` is 0), outside the gradient, then takes
`cfg.updates` optimiser steps on it under `lax.scan` (the old log-probs stay the sampling
policy's). With `cfg.microbatch` each step accumulates gradients over slices of that many
sequences, and the result equals the one-pass update up to float rounding, because every
slice's loss is divided by the token count of the whole batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from policy import config, sample
from policy.config import OptimConfig, knob, nested


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """The update's settings; the defaults are the paper's (clip 0.2, KL 1e-2, grad-norm 1)."""

    optim: OptimConfig = knob(default_factory=lambda: OptimConfig(lr=1e-6),
                              help="the optimiser (a constant rate after any warm-up)")
    clip_eps: float = knob(0.2, "PPO-style ratio clip")
    kl_coef: float = knob(1e-2, "weight of the KL penalty to the frozen start (0: none)")
    kl_clamp: float = knob(10.0, "|ref_logp - logp| is clamped to this before exp()")
    microbatch: int = knob(0, "sequences per gradient slice; 0: the whole batch at once")
    updates: int = knob(1, "optimiser steps per sampled batch (>1: the clipped ratio binds)")

    def __post_init__(self) -> None:
        nested(self)
        checks = [(self.clip_eps > 0, "clip_eps must be > 0"),
                  (self.kl_coef >= 0, "kl_coef must be >= 0"),
                  (self.kl_clamp > 0, "kl_clamp must be > 0"),
                  (self.microbatch >= 0, "microbatch must be >= 0"),
                  (self.updates >= 1, "updates must be >= 1"),
                  (self.optim.schedule == "constant",
                   "the learning rate is constant after its warm-up (schedule 'constant')")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GRPOConfig: {message}")


class Rollout(NamedTuple):
    """B*n sampled sequences and what the update needs of them."""

    prompt: sample.Prompt  # B*n sequences
    frames: jax.Array  # uint8[B*n, H, W, 3]
    tokens: jax.Array  # int32[B*n, N] the responses
    mask: jax.Array  # bool[B*n, N] response tokens (up to the end of turn)
    old_logprobs: jax.Array  # float32[B*n, N] log-probs under the sampling policy
    advantages: jax.Array  # float32[B*n]
    ref_logprobs: jax.Array | None = None  # float32[B*n, N] under the reference (the update's)


def optimizer(cfg: GRPOConfig) -> optax.GradientTransformation:
    """AdamW after global-norm clipping, with an optional linear warm-up (`cfg.optim`)."""
    return config.optimizer(cfg.optim, steps=0)


def group_advantages(rewards: jax.Array) -> jax.Array:
    """float32[B, n] -> float32[B, n]: (r - group mean) / (group std + 1e-6). A group whose
    rewards are all equal gets zeros: it carries no signal about which sample was better."""
    mean = jnp.mean(rewards, axis=1, keepdims=True)
    std = jnp.std(rewards, axis=1, keepdims=True)
    return (rewards - mean) / (std + 1e-6)


def kl_estimate(logprobs: jax.Array, ref_logprobs: jax.Array, clamp: float) -> jax.Array:
    """Per-token KL(policy || reference) estimate exp(d) - d - 1 with d = ref - policy log-prob
    (Schulman's low-variance, always >= 0 estimator), d clamped to [-clamp, clamp]."""
    d = jnp.clip(ref_logprobs - logprobs, -clamp, clamp)
    return jnp.exp(d) - d - 1.0


def token_losses(logprobs, old_logprobs, ref_logprobs, advantages, cfg: GRPOConfig):
    """(float32[S, N] per-token loss, dict of per-token diagnostics). The ratio is clipped to
    [1 - eps, 1 + eps] on the side that would move the policy further (PPO's pessimistic min)."""
    ratio = jnp.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
    kl = (kl_estimate(logprobs, ref_logprobs, cfg.kl_clamp) if cfg.kl_coef
          else jnp.zeros_like(logprobs))
    clipped = (jnp.abs(ratio - 1) > cfg.clip_eps) & (ratio * adv > jnp.clip(
        ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
    return policy_loss + cfg.kl_coef * kl, dict(kl=kl, clipped=clipped.astype(jnp.float32))


def loss_sums(params, graphdef, batch: Rollout, cfg: GRPOConfig):
    """Sums over the batch's response tokens: (loss, dict of sums). Dividing by the token count
    gives GRPO's token-mean. `batch.ref_logprobs` must be filled in (`reference_logprobs`)."""
    model = nnx.merge(graphdef, params)
    logprobs = sample.token_logprobs(model, batch.prompt, batch.frames, batch.tokens)
    losses, diag = token_losses(logprobs, batch.old_logprobs, batch.ref_logprobs,
                                batch.advantages, cfg)
    mask = batch.mask.astype(jnp.float32)
    sums = {name: jnp.sum(value * mask) for name, value in diag.items()}
    return jnp.sum(losses * mask), sums


def _per_slice(batch: Rollout, size: int):
    """(the batch's per-sequence fields reshaped to [S / size, size, ...] for a scan over
    slices, a function that puts the shared prompt prefix back into one slice). The prefix
    rows are shared, not per sequence."""
    prompt = batch.prompt
    per_sequence = batch._replace(prompt=prompt._replace(prefix=None, prefix_valid=None))

    def whole(piece: Rollout) -> Rollout:
        return piece._replace(prompt=piece.prompt._replace(prefix=prompt.prefix,
                                                           prefix_valid=prompt.prefix_valid))

    slices = jax.tree.map(lambda x: x.reshape((-1, size) + x.shape[1:]), per_sequence)
    return slices, whole


def reference_logprobs(graphdef, ref_params, batch: Rollout, cfg: GRPOConfig,
                       size: int) -> jax.Array:
    """float32[S, N]: the response tokens' log-probs under the frozen reference, `size`
    sequences at a time; zeros (nothing computed) when `cfg.kl_coef` is 0."""
    if not cfg.kl_coef:
        return jnp.zeros(batch.tokens.shape, jnp.float32)
    ref_model = nnx.merge(graphdef, ref_params)
    slices, whole = _per_slice(batch._replace(ref_logprobs=None), size)

    def score(piece):
        piece = whole(piece)
        return sample.token_logprobs(ref_model, piece.prompt, piece.frames, piece.tokens)

    return jax.lax.stop_gradient(jax.lax.map(score, slices).reshape(batch.tokens.shape))


@functools.lru_cache(maxsize=16)
def compiled_update(graphdef: nnx.GraphDef, cfg: GRPOConfig):
    """`make_update` with `optimizer(cfg)`, one per (model graph, settings) in a process, so
    runs with the same settings share the compiled update."""
    return make_update(graphdef, optimizer(cfg), cfg)


def make_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, cfg: GRPOConfig):
    """update(params, opt_state, ref_params, batch: Rollout) -> (params, opt_state, metrics);
    jitted. metrics (of the last of `cfg.updates` steps): loss, kl, clip_fraction (token
    means), grad_norm (before clipping)."""
    grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

    @jax.jit
    def update(params, opt_state, ref_params, batch: Rollout):
        size = batch.tokens.shape[0]
        tokens = jnp.maximum(jnp.sum(batch.mask), 1).astype(jnp.float32)
        micro = cfg.microbatch if 0 < cfg.microbatch < size else size
        if size % micro:
            raise ValueError(f"microbatch {micro} does not divide the batch of {size} sequences")
        batch = batch._replace(ref_logprobs=reference_logprobs(graphdef, ref_params, batch, cfg,
                                                               micro))
        slices, whole = _per_slice(batch, micro)

        def one_step(carry, _):
            params, opt_state = carry

            def one(acc, piece):
                (loss, sums), grads = grad_fn(params, graphdef, whole(piece), cfg)
                acc_grads, acc_loss, acc_sums = acc
                acc_grads = jax.tree.map(jnp.add, acc_grads, grads)
                acc_sums = jax.tree.map(jnp.add, acc_sums, sums)
                return (acc_grads, acc_loss + loss, acc_sums), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            empty = dict(kl=jnp.float32(0), clipped=jnp.float32(0))
            (grads, loss, sums), _ = jax.lax.scan(one, (zeros, jnp.float32(0), empty), slices)
            grads = jax.tree.map(lambda g: g / tokens, grads)
            grad_norm = optax.tree.norm(grads)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            metrics = dict(loss=loss / tokens, kl=sums["kl"] / tokens,
                           clip_fraction=sums["clipped"] / tokens, grad_norm=grad_norm)
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(one_step, (params, opt_state), None,
                                                    length=cfg.updates)
        return params, opt_state, jax.tree.map(lambda m: m[-1], metrics)

    return update

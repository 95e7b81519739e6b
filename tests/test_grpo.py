"""The GRPO update: advantages, clipping and KL against hand-computed values; micro-batching
equals one pass; the update moves log-probs the way the advantages say."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from policy import grpo, model as vlm, sample
from policy.config import build

CFG = grpo.GRPOConfig()


def test_group_advantages_by_hand():
    rewards = jnp.array([[0.0, 1.0, 2.0],   # mean 1, std sqrt(2/3)
                         [1.0, 1.0, 1.0],   # all equal: no signal
                         [2.0, 0.0, 0.0]])  # ties: mean 2/3, std sqrt(8/9)
    adv = np.asarray(grpo.group_advantages(rewards))
    s = math.sqrt(2 / 3)
    np.testing.assert_allclose(adv[0], [-1 / s, 0, 1 / s], rtol=1e-5)
    np.testing.assert_array_equal(adv[1], [0, 0, 0])
    t = math.sqrt(8 / 9)
    np.testing.assert_allclose(adv[2], [(4 / 3) / t, -(2 / 3) / t, -(2 / 3) / t], rtol=1e-5)
    assert adv[2, 1] == adv[2, 2]


def test_clipped_ratio_loss_by_hand():
    # ratio 1.5 or 0.5 against advantages +1 / -1: PPO's min picks the clipped term only when
    # the ratio has moved past 1 +- eps in the direction the advantage rewards
    ratio = jnp.array([[1.5, 1.5, 0.5, 0.5, 1.1]])
    adv = jnp.array([1.0])
    old = jnp.zeros((1, 5))
    logp = jnp.log(ratio)
    for sign, expected, clipped in ((1.0, [-1.2, -1.2, -0.5, -0.5, -1.1], [1, 1, 0, 0, 0]),
                                    (-1.0, [1.5, 1.5, 0.8, 0.8, 1.1], [0, 0, 1, 1, 0])):
        losses, diag = grpo.token_losses(logp, old, logp, sign * adv, CFG)  # ref = policy: KL 0
        np.testing.assert_allclose(losses[0], expected, rtol=1e-5)
        np.testing.assert_array_equal(diag["clipped"][0], clipped)
        np.testing.assert_allclose(diag["kl"], 0.0, atol=1e-7)


def test_kl_estimate_by_hand():
    logp = jnp.array([0.0, -1.0, -5.0, 0.0])
    ref = jnp.array([0.0, -1.0 + math.log(2), -5.0 - math.log(2), 100.0])
    kl = np.asarray(grpo.kl_estimate(logp, ref, clamp=10.0))
    np.testing.assert_allclose(kl[:3], [0.0, 2 - math.log(2) - 1, 0.5 + math.log(2) - 1],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kl[3], math.exp(10) - 11, rtol=1e-5)  # d clamped to 10
    assert (kl >= 0).all()


def test_kl_term_enters_the_loss_with_its_coefficient():
    logp, ref = jnp.full((1, 2), -1.0), jnp.full((1, 2), -1.0 + math.log(2))
    cfg = grpo.GRPOConfig(kl_coef=0.5)
    losses, _ = grpo.token_losses(logp, logp, ref, jnp.zeros(1), cfg)  # advantage 0
    np.testing.assert_allclose(losses, 0.5 * (1 - math.log(2)), rtol=1e-5)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="clip_eps"):
        grpo.GRPOConfig(clip_eps=0)
    with pytest.raises(ValueError, match="microbatch"):
        grpo.GRPOConfig(microbatch=-1)


# ---- the jitted update on a tiny model ------------------------------------------------------

MODEL_CFG = vlm.config("tiny", vocab_size=32, width=32, depth=1, heads=2, kv_heads=1,
                       mlp_width=64, vision_width=16, vision_depth=1, vision_heads=1,
                       vision_mlp=32, learned_positions=0)
GRAPHDEF, PARAMS = nnx.split(vlm.create(MODEL_CFG, 5, seed=0))
S, N = 8, 6


def rollout(advantages):
    key = jax.random.key(0)
    tokens = jax.random.randint(key, (S, N), 6, 32)
    prompt = sample.Prompt(jnp.full((1, 3), 7), jnp.ones((1, 3), bool),
                           jnp.tile(jnp.array([[1, 5, 5, 5, 5, 2]]), (S, 1)),
                           jnp.ones((S, 6), bool), jnp.zeros(S, jnp.int32))
    frames = jax.random.randint(key, (S, 64, 64, 3), 0, 256).astype(jnp.uint8)
    mask = jnp.arange(N)[None] < jnp.array([6, 5, 4, 3, 6, 2, 1, 6])[:, None]
    old = sample.score(GRAPHDEF, PARAMS, prompt, frames, tokens)
    return grpo.Rollout(prompt, frames, tokens, mask, old, jnp.asarray(advantages, jnp.float32))


# one update function per settings, shared by the tests (each compiles once)
UPDATE_CFG = build(grpo.GRPOConfig, lr=3e-3)


def run_update(batch, cfg=UPDATE_CFG, params=PARAMS, opt_state=None):
    tx = grpo.optimizer(cfg)
    opt_state = tx.init(PARAMS) if opt_state is None else opt_state
    return grpo.compiled_update(GRAPHDEF, cfg)(params, opt_state, PARAMS, batch)


def test_microbatches_equal_one_pass():
    batch = rollout([1, -1, 0.5, -0.5, 2, 0, -2, 1])
    whole = run_update(batch)
    params, _, metrics = run_update(batch, dataclasses.replace(UPDATE_CFG, microbatch=2))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(whole[0])):
        np.testing.assert_allclose(a, b, atol=1e-4)  # Adam: steps of about lr=3e-3
    for name in ("loss", "kl", "grad_norm"):
        np.testing.assert_allclose(metrics[name], whole[2][name], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="does not divide"):  # raised while tracing
        run_update(batch, dataclasses.replace(UPDATE_CFG, microbatch=3))


def test_on_policy_loss_is_minus_the_mean_advantage_and_kl_zero():
    # policy = old = reference: ratio 1 everywhere, so the loss is -(token-weighted mean advantage)
    adv = jnp.array([1, -1, 0.5, -0.5, 2, 0, -2, 1], jnp.float32)
    batch = rollout(adv)
    _, _, metrics = run_update(batch)
    lengths = jnp.sum(batch.mask, axis=1)
    np.testing.assert_allclose(metrics["loss"], -jnp.sum(adv * lengths) / jnp.sum(lengths),
                               rtol=1e-4)
    np.testing.assert_allclose(metrics["kl"], 0.0, atol=1e-6)
    assert float(metrics["clip_fraction"]) == 0.0 and float(metrics["grad_norm"]) > 0


def test_updates_raise_the_log_probs_of_positive_advantages():
    adv = jnp.array([1, -1, 1, -1, 1, -1, 1, -1], jnp.float32)
    batch = rollout(adv)
    params, opt_state = PARAMS, grpo.optimizer(UPDATE_CFG).init(PARAMS)
    for _ in range(5):
        params, opt_state, _ = run_update(batch, params=params, opt_state=opt_state)
    after = sample.score(GRAPHDEF, params, batch.prompt, batch.frames, batch.tokens)
    change = jnp.sum((after - batch.old_logprobs) * batch.mask, axis=1)
    assert bool(jnp.all(change[adv > 0] > 0)) and bool(jnp.all(change[adv < 0] < 0))


def test_k_updates_in_one_call_equal_k_calls():
    """`updates=3` runs three optimiser steps inside the jitted update, on the same rollout
    (old log-probs stay the sampling policy's): the same as three calls of one step."""
    batch = rollout([1, -1, 0.5, -0.5, 2, 0, -2, 1])
    params, opt_state = PARAMS, grpo.optimizer(UPDATE_CFG).init(PARAMS)
    for _ in range(3):
        params, opt_state, last = run_update(batch, params=params, opt_state=opt_state)
    inside = run_update(batch, dataclasses.replace(UPDATE_CFG, updates=3))
    # Adam's steps are about lr (3e-3) each whatever the gradient's size, so the rounding of
    # a near-zero gradient (the scan compiles apart from the single step) can move a
    # parameter by a small part of one: 1.3e-5 on one AMD EPYC machine. A missed or repeated
    # step would move them by about lr.
    for a, b in zip(jax.tree.leaves(inside[0]), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for name in ("loss", "kl", "clip_fraction", "grad_norm"):
        np.testing.assert_allclose(inside[2][name], last[name], rtol=1e-4, atol=1e-6)
    assert float(last["kl"]) > 0  # the later steps moved away from the reference
    with pytest.raises(ValueError, match="updates"):
        grpo.GRPOConfig(updates=0)


def test_without_a_kl_term_the_reference_is_never_read():
    cfg = dataclasses.replace(UPDATE_CFG, kl_coef=0.0)
    batch = rollout([1, -1, 0.5, -0.5, 2, 0, -2, 1])
    poisoned = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), PARAMS)
    tx = grpo.optimizer(cfg)
    update = grpo.compiled_update(GRAPHDEF, cfg)
    clean = update(PARAMS, tx.init(PARAMS), PARAMS, batch)
    params, _, metrics = update(PARAMS, tx.init(PARAMS), poisoned, batch)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(clean[0])):
        np.testing.assert_array_equal(a, b)
    assert float(metrics["kl"]) == 0.0 and np.isfinite(float(metrics["loss"]))

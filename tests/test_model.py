"""The VLM: shapes, causal masking, padding, the key/value cache, configs, parameter names."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from policy import model as vlm

CFG = vlm.config("tiny", vocab_size=64, width=32, depth=2, heads=4, kv_heads=2, mlp_width=64,
                 vision_width=16, vision_depth=1, vision_heads=1, vision_mlp=32)
IMAGE_PAD = 5
B, T = 2, 14
FRAMES = jax.random.randint(jax.random.key(1), (B, 64, 64, 3), 0, 256).astype(jnp.uint8)
N_IMAGE = CFG.num_image_tokens(FRAMES.shape[1:])  # 64 px / (16 * 2) = 2 per side -> 4
TOKENS = (jax.random.randint(jax.random.key(2), (B, T), 6, 64)
          .at[:, 1:1 + N_IMAGE].set(IMAGE_PAD))


def entry_points(cfg):
    """The model's entry points, jitted (eager calls compile every op on its own)."""
    graphdef, params = nnx.split(vlm.create(cfg, IMAGE_PAD, seed=0))
    merge = lambda params: nnx.merge(graphdef, params)  # noqa: E731
    return types.SimpleNamespace(
        params=params,
        forward=jax.jit(lambda params, tokens, frames, valid: merge(params)(tokens, frames, valid)),
        call=jax.jit(lambda params, *args: merge(params)(*args)),
        encode_prefix=jax.jit(lambda params, *args: merge(params).encode_prefix(*args)),
        prefill=jax.jit(lambda params, tokens, frames, valid, length, prefix=None, group=None:
                        merge(params).prefill(tokens, frames, valid, length, prefix, group),
                        static_argnums=4),
        decode=jax.jit(lambda params, token, cache: merge(params).decode(token, cache)))


MODELS = {"plain": entry_points(dataclasses.replace(CFG, recency_bias=False)),
          "recency": entry_points(dataclasses.replace(CFG, recency_bias=True))}
M = MODELS["plain"]
both = pytest.mark.parametrize("m", list(MODELS.values()), ids=list(MODELS))


def test_shapes_and_dtype():
    logits = M.forward(M.params, TOKENS, FRAMES, jnp.ones((B, T), bool))
    assert logits.shape == (B, T, CFG.vocab_size) and logits.dtype == jnp.float32
    assert N_IMAGE == 4 and bool(jnp.all(jnp.isfinite(logits)))


@both
def test_changing_a_later_token_never_changes_an_earlier_logit(m):
    valid = jnp.ones((B, T), bool)
    base = m.forward(m.params, TOKENS, FRAMES, valid)
    for t in (8, 11, T - 1):
        changed = m.forward(m.params, TOKENS.at[:, t].set(7 if int(TOKENS[0, t]) != 7 else 8),
                            FRAMES, valid)
        np.testing.assert_array_equal(changed[:, :t], base[:, :t])
        assert float(jnp.abs(changed[:, t:] - base[:, t:]).max()) > 0


def test_the_image_reaches_the_text():
    valid = jnp.ones((B, T), bool)
    other = M.forward(M.params, TOKENS, FRAMES[::-1], valid)
    base = M.forward(M.params, TOKENS, FRAMES, valid)
    assert float(jnp.abs(other[:, -1] - base[:, -1]).max()) > 1e-4


@both
def test_left_padding_changes_nothing(m):
    pad = 3
    padded = jnp.concatenate([jnp.zeros((B, pad), jnp.int32), TOKENS], axis=1)
    valid = jnp.arange(T + pad)[None].repeat(B, 0) >= pad
    np.testing.assert_allclose(m.forward(m.params, padded, FRAMES, valid)[:, pad:],
                               m.forward(m.params, TOKENS, FRAMES, jnp.ones((B, T), bool)),
                               atol=2e-5)


def test_the_recency_bias_changes_the_logits_and_adds_no_parameters():
    plain, recency = MODELS["plain"], MODELS["recency"]
    assert jax.tree.structure(plain.params) == jax.tree.structure(recency.params)
    valid = jnp.ones((B, T), bool)
    gap = jnp.abs(plain.forward(plain.params, TOKENS, FRAMES, valid)
                  - recency.forward(plain.params, TOKENS, FRAMES, valid))
    assert float(gap[:, 0].max()) < 1e-5  # the first token sees only itself
    assert float(gap[:, -1].max()) > 1e-3
    np.testing.assert_allclose(vlm.recency_slopes(4), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8])


@both
def test_cached_decoding_equals_the_full_forward_pass(m):
    valid = jnp.ones((B, T), bool)
    full = m.forward(m.params, TOKENS, FRAMES, valid)
    split = 9
    logits, cache = m.prefill(m.params, TOKENS[:, :split], FRAMES, valid[:, :split], T + 2)
    np.testing.assert_allclose(logits, full[:, split - 1], atol=2e-5)
    for t in range(split, T):
        logits, cache = m.decode(m.params, TOKENS[:, t], cache)
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5)


@both
def test_a_shared_prefix_equals_the_prefix_written_out(m):
    prefix = jax.random.randint(jax.random.key(3), (2, 5), 6, 64)
    prefix_valid = jnp.ones((2, 5), bool).at[1, :2].set(False)  # left-padded instructions
    encoded = m.encode_prefix(m.params, prefix, prefix_valid)
    for group in (jnp.array([1, 0]), None):
        rows = jnp.zeros(B, jnp.int32) if group is None else group
        one = encoded if group is not None else jax.tree.map(lambda x: x[:1], encoded)
        written = jnp.concatenate([prefix[rows], TOKENS], axis=1)
        valid = jnp.concatenate([prefix_valid[rows], jnp.ones((B, T), bool)], axis=1)
        full = m.forward(m.params, written, FRAMES, valid)[:, 5:]
        np.testing.assert_allclose(m.call(m.params, TOKENS, FRAMES, None, one, group), full,
                                   atol=2e-5)
        split = T - 2
        logits, cache = m.prefill(m.params, TOKENS[:, :split], FRAMES,
                                  jnp.ones((B, split), bool), T, one, group)
        np.testing.assert_allclose(logits, full[:, split - 1], atol=2e-5)
        for t in range(split, T):
            logits, cache = m.decode(m.params, TOKENS[:, t], cache)
            np.testing.assert_allclose(logits, full[:, t], atol=2e-5)


def test_several_prefixes_need_a_group():
    encoded = M.encode_prefix(M.params, jnp.full((2, 3), 7))
    with pytest.raises(ValueError, match="need `group`"):
        M.call(M.params, TOKENS, FRAMES, None, encoded)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        vlm.config("tiny", heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="unknown model size"):
        vlm.config("huge")
    with pytest.raises(ValueError, match="not a multiple of 32 pixels"):
        CFG.num_image_tokens((100, 64, 3))


def test_named_sizes_build():
    assert 500_000 < vlm.num_params(vlm.create(vlm.config("tiny"), IMAGE_PAD)) < 5_000_000
    for name in ("small", "base"):
        shapes = jax.eval_shape(lambda: nnx.state(vlm.create(vlm.config(name), IMAGE_PAD)))
        assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) > 10_000_000


def test_parameter_names_follow_qwen2_vl():
    model = vlm.create(CFG, IMAGE_PAD)
    names = vlm.hf_names(model)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert len(names) == len(flat) and set(names.values()) == set(flat)
    for key in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.bias", "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.input_layernorm.weight", "model.norm.weight",
                "visual.patch_embed.proj.weight", "visual.blocks.0.attn.qkv.weight",
                "visual.blocks.0.mlp.fc2.bias", "visual.merger.ln_q.weight",
                "visual.merger.mlp.0.weight", "visual.merger.mlp.2.weight"):
        assert key in names, key
    untied = vlm.create(vlm.config("tiny", vocab_size=64, tie_embeddings=False), IMAGE_PAD)
    assert "lm_head.weight" in vlm.hf_names(untied)


def test_remat_changes_neither_the_loss_nor_the_gradients():
    graphdef, params = nnx.split(vlm.create(CFG, IMAGE_PAD, seed=0))
    remat = vlm.with_remat(graphdef, params)
    assert nnx.merge(remat, params).cfg.remat and not nnx.merge(graphdef, params).cfg.remat
    valid = jnp.ones((B, T), bool)

    def loss(params, graphdef):
        logits = nnx.merge(graphdef, params)(TOKENS, FRAMES, valid)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (plain_loss, plain_grads), (remat_loss, remat_grads) = grad(params, graphdef), grad(params,
                                                                                        remat)
    np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
    # the backward pass really recomputes: one rematerialised block per decoder layer
    program = lambda graphdef: str(jax.make_jaxpr(jax.grad(loss), static_argnums=1)(  # noqa
        params, graphdef))
    assert program(remat).count("remat2[") == CFG.depth and "remat2[" not in program(graphdef)

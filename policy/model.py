"""A small Qwen2-VL-style vision-language model in Flax NNX.

    frame uint8[H, W, 3] -> patches (patch_size) -> ViT blocks (2-D rotary) -> 2x2 patch merger
        -> image tokens, written over the `<|image_pad|>` placeholders of the token sequence
    [<|im_start|> <|vision_start|> <|image_pad|> x N <|vision_end|> prompt <|im_end|> <|im_start|>
     response <|im_end|>] -> causal decoder (RMSNorm, rotary positions, SwiGLU, grouped-query
        attention) -> logits

Parameter paths follow Hugging Face's Qwen2-VL (`visual.blocks.0.attn.qkv`, `model.layers.0.
self_attn.q_proj`, `model.embed_tokens`, `lm_head`), and `hf_names` gives the safetensors key of
each. Differences from Qwen2-VL, so an import knows what to adapt: the patch embedding is a linear
map of one frame's patch (Qwen2-VL's Conv3d also spans two frames in time), and the decoder uses
1-D rotary positions over the sequence (Qwen2-VL's M-RoPE gives image tokens 2-D positions), and
the named sizes add learned absolute positions to the decoder's input (`learned_positions`; set 0
for Qwen2-VL's layout) and an ALiBi-style recency bias to its attention (`recency_bias`).

The decoder runs three ways, all on explicit arrays so they jit and scan: `__call__` (the whole
sequence, for training and scoring), `prefill` (the prompt, filling a key/value cache) and
`decode` (one token per sequence against the cache).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# ---- configuration ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the VLM. `vocab_size` must cover the tokenizer's."""

    vocab_size: int = 512
    patch_size: int = 16  # pixels per patch side
    spatial_merge: int = 2  # merge s x s patches into one image token
    vision_width: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_mlp: int = 256
    width: int = 128  # decoder hidden size
    depth: int = 4
    heads: int = 4
    kv_heads: int = 2
    mlp_width: int = 384
    rope_theta: float = 10_000.0
    # Qwen2-VL's M-RoPE: the head's d/2 rotary frequencies split into chunks turning with the
    # (time, height, width) positions in turn (`mrotary`); positions are then int32[3, B, T].
    # Empty: 1-D rotary, positions int32[B, T].
    mrope_section: tuple[int, ...] = ()
    # Learned absolute positions added to the decoder's input, image tokens included (0: none,
    # as in Qwen2-VL): rotary positions reach only the attention scores, so without them no
    # token's value says where it is, and a move's coordinates cannot be read off the board.
    learned_positions: int = 1024
    # Init std of the token and position embeddings (None: 1/sqrt(width), flax's default and
    # Qwen2-VL's scale). Each decoder layer adds about 1 per feature to the residual stream;
    # embeddings far below that are swamped after the first layer (docs/learnability.md).
    embed_std: float | None = 0.33
    position_std: float = 0.33
    # ALiBi-style recency bias on the decoder's attention scores: head h subtracts
    # slope_h * distance, slopes 2^-8/H ... 2^-8, so some heads start local and others global.
    # Fixed prompt tokens before the board dilute every head's attention at init and delay
    # learning the move (docs/learnability.md). No parameters. Off by default (Qwen2-VL's
    # layout, and checkpoints saved before it existed); on for the named sizes.
    recency_bias: bool = False
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    dtype: str = "float32"  # compute dtype; parameters stay float32
    # Recompute each decoder layer's activations in the backward pass instead of keeping them
    # (`jax.checkpoint`): a full forward's activation memory falls from every layer's to about one
    # layer's, for roughly a third more compute. The cached decode is never rematerialised.
    remat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mrope_section", tuple(self.mrope_section))  # JSON: a list
        checks = [
            (self.width % self.heads == 0, "width must be a multiple of heads"),
            (self.heads % self.kv_heads == 0, "heads must be a multiple of kv_heads"),
            (self.vision_width % self.vision_heads == 0, "vision_width must be a multiple of heads"),
            ((self.width // self.heads) % 2 == 0, "the decoder's head size must be even"),
            ((self.vision_width // self.vision_heads) % 4 == 0, "the ViT head size must be 4k"),
            (not self.mrope_section or 2 * sum(self.mrope_section) == self.width // self.heads,
             "mrope_section must sum to half the decoder's head size"),
            (self.dtype in ("float32", "bfloat16"), "dtype must be float32 or bfloat16"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ModelConfig: {message} ({self})")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def image_tokens_per_side(self) -> int:
        return self.patch_size * self.spatial_merge  # pixels per image token side

    def num_image_tokens(self, frame_shape: tuple[int, ...]) -> int:
        """Image tokens for a frame of shape (H, W, 3); ValueError if it does not tile."""
        h, w = frame_shape[:2]
        side = self.image_tokens_per_side
        if h % side or w % side:
            raise ValueError(f"frame {h}x{w} is not a multiple of {side} pixels (patch_size * "
                             "spatial_merge); pick tile_px or patch_size to fit")
        return (h // side) * (w // side)


CONFIGS: dict[str, ModelConfig] = {
    # ~1M parameters: trains on a 2-core CPU in minutes. Every named size is meant to be trained
    # from scratch: learned positions, embeddings at 0.33, untied output head, recency bias.
    "tiny": ModelConfig(recency_bias=True),
    # ~20M: a single GPU.
    "small": ModelConfig(vision_width=256, vision_depth=4, vision_heads=4, vision_mlp=1024,
                         width=384, depth=8, heads=6, kv_heads=2, mlp_width=1024,
                         recency_bias=True, dtype="bfloat16"),
    # ~110M: Qwen2-VL's layout at a GPU-friendly size.
    "base": ModelConfig(vision_width=512, vision_depth=8, vision_heads=8, vision_mlp=2048,
                        width=768, depth=12, heads=12, kv_heads=4, mlp_width=2048,
                        recency_bias=True, dtype="bfloat16"),
}


def config(name: str, **overrides: Any) -> ModelConfig:
    """A named size, optionally changed: `config("tiny", depth=2)`."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model size {name!r}; choose one of {sorted(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name], **overrides)


# ---- rotary positions ----------------------------------------------------------------------


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotate x: [..., S, heads, d] by positions: int32[..., S] (Hugging Face's rotate-half
    layout: the first d/2 features pair with the last d/2)."""
    angles = positions[..., None].astype(jnp.float32) * _inv_freq(x.shape[-1], theta)
    return _rotate(x, angles)


def mrotary(x: jax.Array, positions: jax.Array, theta: float,
            section: tuple[int, ...]) -> jax.Array:
    """Qwen2-VL's multimodal rotary (M-RoPE): x: [..., S, heads, d] rotated by positions:
    int32[3, ..., S] (time, height, width). The d/2 frequencies are split into chunks of
    `section` (summing to d/2); chunk c turns with position axis c % 3. With the three axes
    equal (text) it is `rotary`."""
    axis = np.repeat(np.arange(len(section)) % 3, section)  # [d/2]: each frequency's axis
    by_frequency = jnp.moveaxis(positions[axis], 0, -1).astype(jnp.float32)  # [..., S, d/2]
    return _rotate(x, by_frequency * _inv_freq(x.shape[-1], theta))


def _inv_freq(d: int, theta: float) -> jax.Array:
    half = d // 2
    return 1.0 / theta ** (jnp.arange(half, dtype=jnp.float32) / half)


def _rotate(x: jax.Array, angles: jax.Array) -> jax.Array:
    """x: [..., S, heads, d] turned by angles: float32[..., S, d/2]."""
    half = x.shape[-1] // 2
    cos, sin = jnp.cos(angles)[..., None, :], jnp.sin(angles)[..., None, :]
    first, second = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return out.astype(x.dtype)


def mrope_positions(is_image: jax.Array, valid: jax.Array,
                    grid: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """Qwen2-VL's position ids: (int32[3, B, T] (time, height, width), int32[B] delta).
    is_image: bool[B, T], the image placeholders (whole images of `grid` = (rows, cols)
    image tokens each, after the patch merge); valid: bool[B, T], False on padding (its ids
    are 0). Text counts one position a token; an image starting at position p spans rows
    p..p+rows-1 and columns p..p+cols-1, all at time p, and the text after it resumes at
    p + max(rows, cols). `delta` is what a token appended after the sequence adds to its
    index: position = index + delta."""
    rows, cols = grid
    size = rows * cols
    is_image, valid = is_image & valid, valid
    images_before = jnp.cumsum(is_image, axis=1) - is_image  # image tokens before each token
    text_before = jnp.cumsum(valid & ~is_image, axis=1) - (valid & ~is_image)
    start = text_before + (images_before // size) * max(rows, cols)  # where its span starts
    within = images_before % size
    image = jnp.stack([start, start + within // cols, start + within % cols])
    positions = jnp.where(is_image, image, start[None])
    positions = jnp.where(valid, positions, 0).astype(jnp.int32)
    delta = positions.max(axis=(0, 2)) + 1 - valid.sum(1)
    return positions, delta.astype(jnp.int32)


def rotary_2d(x: jax.Array, rows: jax.Array, cols: jax.Array, theta: float) -> jax.Array:
    """2-D rotary for image patches: the first half of each head rotates by the patch's row,
    the second half by its column. x: [B, N, heads, d]; rows, cols: int32[N]."""
    half = x.shape[-1] // 2
    return jnp.concatenate(
        [rotary(x[..., :half], rows, theta), rotary(x[..., half:], cols, theta)], axis=-1)


# ---- vision tower ----------------------------------------------------------------------------


def patchify(frames: jax.Array, patch: int, merge: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """uint8[B, H, W, 3] -> (float32[B, N, patch*patch*3], rows int32[N], cols int32[N]).

    Patches are ordered by merge window (each s x s window's patches are consecutive), windows
    row-major, as Qwen2-VL orders them, so the merger reshapes consecutive groups."""
    b, h, w, c = frames.shape
    gh, gw = h // patch, w // patch
    x = frames.astype(jnp.float32) / 127.5 - 1.0
    x = x.reshape(b, gh // merge, merge, patch, gw // merge, merge, patch, c)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)  # [b, wr, wc, mr, mc, py, px, c]
    x = x.reshape(b, gh * gw, patch * patch * c)
    r = np.arange(gh).reshape(gh // merge, merge)[:, None, :, None]
    k = np.arange(gw).reshape(gw // merge, merge)[None, :, None, :]
    rows = np.broadcast_to(r, (gh // merge, gw // merge, merge, merge)).ravel()
    cols = np.broadcast_to(k, (gh // merge, gw // merge, merge, merge)).ravel()
    return x, jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)


class PatchEmbed(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.proj = nnx.Linear(cfg.patch_size ** 2 * 3, cfg.vision_width, use_bias=False,
                               dtype=cfg.dtype, rngs=rngs)


class VisionAttention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.heads, self.theta = cfg.vision_heads, cfg.rope_theta
        self.qkv = nnx.Linear(cfg.vision_width, 3 * cfg.vision_width, dtype=cfg.dtype, rngs=rngs)
        self.proj = nnx.Linear(cfg.vision_width, cfg.vision_width, dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
        b, n, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, n, 3 * self.heads, d // self.heads), 3, axis=2)
        q, k = rotary_2d(q, rows, cols, self.theta), rotary_2d(k, rows, cols, self.theta)
        out = jax.nn.dot_product_attention(q, k, v)  # every patch sees every patch
        return self.proj(out.reshape(b, n, d))


class VisionMLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(cfg.vision_width, cfg.vision_mlp, dtype=cfg.dtype, rngs=rngs)
        self.fc2 = nnx.Linear(cfg.vision_mlp, cfg.vision_width, dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.fc1(x)
        return self.fc2(h * jax.nn.sigmoid(1.702 * h))  # Qwen2-VL's quick GELU


class VisionBlock(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(cfg.vision_width, epsilon=cfg.norm_eps, rngs=rngs)
        self.attn = VisionAttention(cfg, rngs)
        self.norm2 = nnx.LayerNorm(cfg.vision_width, epsilon=cfg.norm_eps, rngs=rngs)
        self.mlp = VisionMLP(cfg, rngs)

    def __call__(self, x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x), rows, cols)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
    """LayerNorm, then each s x s window of patches -> one token of the decoder's width."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        merged = cfg.vision_width * cfg.spatial_merge ** 2
        self.group = cfg.spatial_merge ** 2
        self.ln_q = nnx.LayerNorm(cfg.vision_width, epsilon=cfg.norm_eps, rngs=rngs)
        self.mlp = nnx.List([
            nnx.Linear(merged, merged, dtype=cfg.dtype, rngs=rngs),
            nnx.Linear(merged, cfg.width, dtype=cfg.dtype, rngs=rngs),
        ])

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        x = self.ln_q(x).reshape(b, n // self.group, d * self.group)
        return self.mlp[1](jax.nn.gelu(self.mlp[0](x), approximate=False))


class VisionTower(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg, rngs)
        self.blocks = nnx.List([VisionBlock(cfg, rngs) for _ in range(cfg.vision_depth)])
        self.merger = PatchMerger(cfg, rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        """uint8[B, H, W, 3] -> image tokens [B, N, width]."""
        self.cfg.num_image_tokens(frames.shape[1:])
        patches, rows, cols = patchify(frames, self.cfg.patch_size, self.cfg.spatial_merge)
        x = self.patch_embed.proj(patches.astype(self.cfg.dtype))
        for block in self.blocks:
            x = block(x, rows, cols)
        return self.merger(x)


# ---- decoder ---------------------------------------------------------------------------------


class Attention(nnx.Module):
    """Grouped-query causal self-attention with rotary positions over an explicit key/value
    buffer. Queries at buffer slots `start .. start+S-1` see the slots at or before their own
    that `key_valid` allows."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        hd, kv = cfg.head_dim, cfg.kv_heads
        self.q_proj = nnx.Linear(cfg.width, cfg.heads * hd, dtype=cfg.dtype, rngs=rngs)
        self.k_proj = nnx.Linear(cfg.width, kv * hd, dtype=cfg.dtype, rngs=rngs)
        self.v_proj = nnx.Linear(cfg.width, kv * hd, dtype=cfg.dtype, rngs=rngs)
        self.o_proj = nnx.Linear(cfg.heads * hd, cfg.width, use_bias=False, dtype=cfg.dtype,
                                 rngs=rngs)

    def __call__(self, x, positions, buffer, start, key_valid, context=None, bias=None):
        """x: [B, S, width]; positions: int32[B, S]; buffer: (k, v) each [B, kv_heads, M, hd]
        or None (then M = S, start = 0); key_valid: bool[B, M]. context: None or (k, v, valid)
        of a prefix every query sees before the buffer: k, v [C, kv_heads, P, hd], valid
        bool[C, P], with C = B or C = 1 (one prefix shared by the batch, never copied).
        Returns (out, (k, v)): the buffer with this call's keys and values written in.
        Keys and values are kept heads-first, so that attention is a batched matmul over
        contiguous [M, hd] blocks and a decode step writes one slot in place."""
        cfg = self.cfg
        b, s, _ = x.shape
        q = self._rotary(self.q_proj(x).reshape(b, s, cfg.heads, cfg.head_dim), positions)
        k = self._rotary(self.k_proj(x).reshape(b, s, cfg.kv_heads, cfg.head_dim),
                         positions).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(b, s, cfg.kv_heads, cfg.head_dim).transpose(0, 2, 1, 3)
        if buffer is not None:
            k = jax.lax.dynamic_update_slice_in_dim(buffer[0], k.astype(buffer[0].dtype), start, 2)
            v = jax.lax.dynamic_update_slice_in_dim(buffer[1], v.astype(buffer[1].dtype), start, 2)
        query_slot = start + jnp.arange(s)
        allowed = (jnp.arange(k.shape[2])[None, :] <= query_slot[:, None])[None] & key_valid[:, None]
        group = cfg.heads // cfg.kv_heads
        q = q.reshape(b, s, cfg.kv_heads, group, cfg.head_dim).transpose(0, 2, 3, 1, 4)
        # out: [B, kv, g, S, d]
        out = self._attend(q / np.sqrt(cfg.head_dim), k, v, allowed, context, bias)
        out = out.transpose(0, 3, 1, 2, 4).reshape(b, s, cfg.heads * cfg.head_dim)
        return self.o_proj(out), (k, v)

    def _rotary(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        if self.cfg.mrope_section:
            return mrotary(x, positions, self.cfg.rope_theta, self.cfg.mrope_section)
        return rotary(x, positions, self.cfg.rope_theta)

    @staticmethod
    def _attend(q, k, v, allowed, context, bias=None):
        """q: [B, kv, g, S, d] (scaled); k, v: [B, kv, M, d]; allowed: bool[B, S, M]
        -> [B, kv, g, S, d]. Keys are laid out [context | buffer] under one softmax; a context
        shared by the batch (C = 1) is a plain matmul, never broadcast to B. bias: None or
        (context bias, buffer bias) added to the scores."""
        dtype = q.dtype
        scores = [jnp.einsum("bkgsd,bkmd->bkgsm", q, k.astype(dtype),
                             preferred_element_type=jnp.float32)]
        if bias is not None:
            scores[0] = scores[0] + bias[1]
        masks = [allowed]
        if context is not None:
            ck, cv, cvalid = context
            if ck.shape[0] == 1:
                ctx = jnp.einsum("bkgsd,kpd->bkgsp", q, ck[0].astype(dtype),
                                 preferred_element_type=jnp.float32)
            else:
                ctx = jnp.einsum("bkgsd,bkpd->bkgsp", q, ck.astype(dtype),
                                 preferred_element_type=jnp.float32)
            scores.insert(0, ctx if bias is None else ctx + bias[0])
            masks.insert(0, jnp.broadcast_to(cvalid[:, None], (q.shape[0], q.shape[3],
                                                               cvalid.shape[1])))
        mask = jnp.concatenate(masks, axis=-1)[:, None, None]  # [B, 1, 1, S, keys]
        weights = jax.nn.softmax(jnp.where(mask, jnp.concatenate(scores, axis=-1), -1e30),
                                 axis=-1).astype(dtype)
        n = k.shape[2]
        out = jnp.einsum("bkgsm,bkmd->bkgsd", weights[..., -n:], v.astype(dtype))
        if context is not None:
            w = weights[..., :-n]
            if cv.shape[0] == 1:
                out = out + jnp.einsum("bkgsp,kpd->bkgsd", w, cv[0].astype(dtype))
            else:
                out = out + jnp.einsum("bkgsp,bkpd->bkgsd", w, cv.astype(dtype))
        return out


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtype=cfg.dtype, rngs=rngs)
        self.gate_proj = nnx.Linear(cfg.width, cfg.mlp_width, **kw)
        self.up_proj = nnx.Linear(cfg.width, cfg.mlp_width, **kw)
        self.down_proj = nnx.Linear(cfg.mlp_width, cfg.width, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.input_layernorm = nnx.RMSNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = nnx.RMSNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, positions, buffer, start, key_valid, context=None, bias=None):
        h, buffer = self.self_attn(self.input_layernorm(x), positions, buffer, start, key_valid,
                                   context, bias)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), buffer


class TextModel(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        token_init = (nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
                      if cfg.embed_std is None else nnx.initializers.normal(cfg.embed_std))
        self.embed_tokens = nnx.Embed(cfg.vocab_size, cfg.width, dtype=cfg.dtype, rngs=rngs,
                                      embedding_init=token_init)
        if cfg.learned_positions:
            self.embed_positions = nnx.Embed(
                cfg.learned_positions, cfg.width, dtype=cfg.dtype, rngs=rngs,
                embedding_init=nnx.initializers.normal(cfg.position_std))
        self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(cfg.depth)])
        self.norm = nnx.RMSNorm(cfg.width, epsilon=cfg.norm_eps, rngs=rngs)


# ---- the VLM -------------------------------------------------------------------------------


class VLM(nnx.Module):
    """The policy. `image_pad_id` is the tokenizer's `<|image_pad|>` id: the first positions
    holding it (as many as the frame has image tokens) receive the image tokens, in order."""

    def __init__(self, cfg: ModelConfig, image_pad_id: int, *, rngs: nnx.Rngs):
        self.cfg, self.image_pad_id = cfg, image_pad_id
        self.visual = VisionTower(cfg, rngs)
        self.model = TextModel(cfg, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(cfg.width, cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
                                      rngs=rngs)

    def add_positions(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        """x plus the learned absolute positions, if the config has them."""
        if not self.cfg.learned_positions:
            return x
        return x + self.model.embed_positions(
            jnp.minimum(positions, self.cfg.learned_positions - 1))

    def embed(self, tokens: jax.Array, frames: jax.Array, positions: jax.Array) -> jax.Array:
        """Token embeddings with the image tokens written over the placeholders.
        tokens, positions: int32[B, T] (one placeholder per image token); frames:
        uint8[B, H, W, 3]."""
        x = self.model.embed_tokens(tokens)
        image = self.visual(frames).astype(x.dtype)  # [B, N, width]
        is_image = tokens == self.image_pad_id
        slot = jnp.cumsum(is_image, axis=1) - 1
        is_image &= slot < image.shape[1]  # a placeholder the model itself writes stays a token
        slot = jnp.clip(slot, 0, image.shape[1] - 1)
        x = jnp.where(is_image[..., None], jnp.take_along_axis(image, slot[..., None], 1), x)
        return self.add_positions(x, positions)

    def logits(self, x: jax.Array) -> jax.Array:
        x = self.model.norm(x)
        if self.cfg.tie_embeddings:
            return self.model.embed_tokens.attend(x).astype(jnp.float32)
        return self.lm_head(x).astype(jnp.float32)

    def _layers(self, x, positions, cache, start, key_valid, key_positions, context=None):
        """key_positions: int32[B, M], the position of each key slot (for the recency bias,
        which every layer shares)."""
        bias = None
        if self.cfg.recency_bias:
            bias = recency_bias(self.cfg, positions, key_positions,
                                None if context is None else context[0][2])
        new_cache = []
        for i, layer in enumerate(self.model.layers):
            layer_cache = None if cache is None else cache[i]
            layer_context = None if context is None else context[i]

            def run(layer, x):
                return layer(x, positions, layer_cache, start, key_valid, layer_context, bias)

            if self.cfg.remat and cache is None:
                # jax.checkpoint over the layer's parameters as arrays: the layer may belong
                # to a model merged outside the current trace (a lax.map over micro-batches),
                # whose variables an nnx transform would try to update in place
                layer_def, layer_params = nnx.split(layer)
                x, kv = jax.checkpoint(lambda p, x: run(nnx.merge(layer_def, p), x))(
                    layer_params, x)
            else:
                x, kv = run(layer, x)
            new_cache.append(kv)
        return x, new_cache

    def encode_prefix(self, tokens: jax.Array, valid: jax.Array | None = None) -> dict:
        """Keys and values of text prefixes that many sequences share (a game's instructions):
        tokens int32[G, P], left-padded under valid bool[G, P]; no image placeholders. Pass the
        result as `prefix` to `__call__`/`prefill`, with each sequence's prefix in `group`."""
        valid = jnp.ones(tokens.shape, bool) if valid is None else valid
        positions = positions_of(valid)
        x = self.add_positions(self.model.embed_tokens(tokens), positions)
        _, kv = self._layers(x, positions, None, 0, valid, positions)
        return dict(kv=kv, valid=valid, length=jnp.sum(valid, axis=1, dtype=jnp.int32))

    def _context(self, prefix: dict | None, group: jax.Array | None, batch: int):
        """(per-layer (k, v, valid) the batch attends to, int32[B] first position after it).
        One shared prefix stays batch 1 (broadcast inside attention); several are gathered."""
        if prefix is None:
            return None, jnp.zeros((batch,), jnp.int32)
        if prefix["valid"].shape[0] == 1:  # `group` can only be 0
            return ([(k, v, prefix["valid"]) for k, v in prefix["kv"]],
                    jnp.broadcast_to(prefix["length"], (batch,)))
        if group is None:
            raise ValueError("several prefixes need `group`: int32[B], each sequence's prefix")
        valid = prefix["valid"][group]
        return [(k[group], v[group], valid) for k, v in prefix["kv"]], prefix["length"][group]

    def __call__(self, tokens: jax.Array, frames: jax.Array, valid: jax.Array | None = None,
                 prefix: dict | None = None, group: jax.Array | None = None) -> jax.Array:
        """float32[B, T, vocab]: next-token logits at every position. valid: bool[B, T] marks
        real tokens (False for left padding; padded keys are never attended). prefix, group:
        an `encode_prefix` result the tokens follow, and which of its rows each sequence's."""
        valid = jnp.ones(tokens.shape, bool) if valid is None else valid
        context, offset = self._context(prefix, group, tokens.shape[0])
        positions = positions_of(valid) + offset[:, None]
        x, _ = self._layers(self.embed(tokens, frames, positions), positions, None, 0, valid,
                            positions, context)
        return self.logits(x)

    def text_logits(self, tokens: jax.Array, positions: jax.Array,
                    valid: jax.Array) -> jax.Array:
        """float32[B, T, vocab]: the decoder alone on text, each token at a given position (no
        image, no shared prefix): a part of a longer sequence scored without what came before
        it. tokens, positions: int32[B, T]; valid: bool[B, T]."""
        x = self.add_positions(self.model.embed_tokens(tokens), positions)
        x, _ = self._layers(x, positions, None, 0, valid, positions)
        return self.logits(x)

    def prefill(self, tokens: jax.Array, frames: jax.Array, valid: jax.Array, cache_len: int,
                prefix: dict | None = None,
                group: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """Run the prompt tokens: int32[B, T] (after `prefix`, if given) and fill a cache of
        `cache_len` slots. Returns (float32[B, vocab] logits after the last prompt token,
        cache)."""
        b, t = tokens.shape
        cfg = self.cfg
        shape = (b, cfg.kv_heads, cache_len, cfg.head_dim)
        empty = [(jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype))] * cfg.depth
        key_valid = jnp.zeros((b, cache_len), bool).at[:, :t].set(valid)
        context, offset = self._context(prefix, group, b)
        positions = positions_of(valid) + offset[:, None]
        key_positions = jnp.zeros((b, cache_len), jnp.int32).at[:, :t].set(positions)
        x, kv = self._layers(self.embed(tokens, frames, positions), positions, empty, 0, key_valid,
                             key_positions, context)
        cache = dict(kv=kv, key_valid=key_valid, key_positions=key_positions, index=jnp.int32(t),
                     context=context,
                     position=offset + jnp.sum(valid, axis=1, dtype=jnp.int32))
        return self.logits(x[:, -1]), cache

    def decode(self, token: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """One step: token int32[B] goes into slot `cache["index"]`; returns the logits after
        it, float32[B, vocab], and the cache advanced by one slot."""
        index = cache["index"]
        key_valid = jax.lax.dynamic_update_slice_in_dim(
            cache["key_valid"], jnp.ones((token.shape[0], 1), bool), index, 1)
        positions = cache["position"][:, None]
        key_positions = jax.lax.dynamic_update_slice_in_dim(cache["key_positions"], positions,
                                                            index, 1)
        x = self.add_positions(self.model.embed_tokens(token[:, None]), positions)
        x, kv = self._layers(x, positions, cache["kv"], index, key_valid, key_positions,
                             cache["context"])
        cache = dict(cache, kv=kv, key_valid=key_valid, key_positions=key_positions,
                     index=index + 1,
                     position=cache["position"] + 1)
        return self.logits(x[:, 0]), cache


def recency_slopes(heads: int) -> np.ndarray:
    """float32[heads]: ALiBi's geometric slopes 2^(-8 (h+1) / heads)."""
    return (2.0 ** (-8.0 * (np.arange(heads) + 1) / heads)).astype(np.float32)


def recency_bias(cfg: ModelConfig, positions: jax.Array, key_positions: jax.Array,
                 context_valid: jax.Array | None):
    """-slope_h * (query position - key position), as (context bias float32[B, kv, g, S, P]
    or None, buffer bias float32[B, kv, g, S, M]). positions: int32[B, S] (the queries');
    key_positions: int32[B, M]; context_valid: bool[C, P] of a prefix, whose keys sit at
    `positions_of(context_valid)`."""
    slopes = jnp.asarray(recency_slopes(cfg.heads)).reshape(cfg.kv_heads, -1)

    def bias(keys):  # int32[B or 1, K] -> [B, kv, g, S, K]
        distance = (positions[:, :, None] - keys[:, None, :]).astype(jnp.float32)
        return -slopes[None, :, :, None, None] * distance[:, None, None]

    context = None if context_valid is None else bias(positions_of(context_valid))
    return context, bias(key_positions)


def positions_of(valid: jax.Array) -> jax.Array:
    """Rotary positions: 0, 1, ... over the valid tokens (padding takes the next one's)."""
    return jnp.maximum(jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1, 0)


def create(cfg: ModelConfig, image_pad_id: int, seed: int = 0) -> VLM:
    """A randomly initialised VLM."""
    return VLM(cfg, image_pad_id, rngs=nnx.Rngs(seed))


def with_remat(graphdef: nnx.GraphDef, params, remat: bool = True) -> nnx.GraphDef:
    """The same model (any that holds a VLM, a downloaded checkpoint's too) with
    `ModelConfig.remat` set; its parameters are unchanged."""
    model = nnx.merge(graphdef, params)
    for _, module in nnx.iter_modules(model):
        if isinstance(getattr(module, "cfg", None), ModelConfig):
            module.cfg = dataclasses.replace(module.cfg, remat=remat)
    return nnx.split(model)[0]


def num_params(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---- Hugging Face names ----------------------------------------------------------------------


def hf_names(model: VLM) -> dict[str, tuple[str, ...]]:
    """Safetensors key (Qwen2-VL layout) -> this model's parameter path. Kernels are stored
    transposed in PyTorch ([out, in]); LayerNorm/RMSNorm `scale` is `weight`. The merger's
    second linear is `merger.mlp.2` (index 1 is its GELU in PyTorch)."""
    names = {}
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        parts = [str(p) for p in path]
        key = ".".join(parts)
        key = re.sub(r"\.kernel$", ".weight", key)
        key = re.sub(r"\.(scale|embedding)$", ".weight", key)
        key = key.replace("merger.mlp.1.", "merger.mlp.2.")
        names[key] = tuple(path)
    return names

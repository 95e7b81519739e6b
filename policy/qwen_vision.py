"""The vision tower of a Qwen2-VL / Qwen2.5-VL checkpoint, as a pure function of its tensors.

    tokens = image_tokens(weights, config, frames)   # uint8[B, H, W, 3] -> float32[B, N, width]

`weights` holds the checkpoint's `visual.*` tensors under their own names
(`policy.pretrained.read_weights`), `config` is its `PretrainedConfig`. The frames are read
as transformers' image processor reads them (`patches`): scaled to [0, 1], normalised with
CLIP's mean and std, cut into patch_size x patch_size patches ordered merge-window by
merge-window, each repeated over the temporal patch, so that the processor would leave them
as they are. H and W must be multiples of patch_size * spatial_merge (28).

Qwen2-VL: LayerNorm blocks with a quick-GELU MLP, full attention. Qwen2.5-VL: RMSNorm blocks
with a SwiGLU MLP, attention within windows of `window_size` pixels except in
`full_attention_blocks`. Both rotate each head by the patch's row (first quarter of the
frequencies) and column (second quarter), and merge 2 x 2 patches into one token with an MLP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PIXEL_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
PIXEL_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def patches(frames: jax.Array, config) -> tuple[jax.Array, np.ndarray, np.ndarray]:
    """(float32[B, N, 3 * T * P * P] patches in the processor's layout, int[N] each patch's
    row, int[N] its column). frames: uint8[B, H, W, 3]."""
    p, t, m = config.patch_size, config.temporal_patch_size, config.spatial_merge
    b, h, w, _ = frames.shape
    if h % (p * m) or w % (p * m):
        raise ValueError(f"a {h}x{w} frame is not a multiple of {p * m} pixels a side, as "
                         f"{config.variant}'s patches need; pick a tile_px that makes it one")
    rows, cols = h // p, w // p
    x = (frames.astype(jnp.float32) / 255 - PIXEL_MEAN) / PIXEL_STD
    x = x.reshape(b, rows // m, m, p, cols // m, m, p, 3).transpose(0, 1, 4, 2, 5, 7, 3, 6)
    x = jnp.broadcast_to(x[..., None, :, :], x.shape[:6] + (t, p, p))  # a still, t times
    block_row, block_col, row, col = np.meshgrid(np.arange(rows // m), np.arange(cols // m),
                                                 np.arange(m), np.arange(m), indexing="ij")
    return (x.reshape(b, rows * cols, 3 * t * p * p), (block_row * m + row).ravel(),
            (block_col * m + col).ravel())


def image_tokens(weights: dict, config, frames: jax.Array) -> jax.Array:
    """float32[B, N / merge^2, width]: the merged image tokens the decoder reads."""
    x, rows, cols = patches(frames, config)
    x = x @ _linear(weights, "visual.patch_embed.proj", config.vision_width)
    qwen25 = config.variant == "qwen2.5-vl"
    if qwen25:  # which patches share a window of window_size pixels a side
        side = config.window_size // config.patch_size
        window = (rows // side) * (cols.max() + 1) + cols // side
        in_window = jnp.asarray(window[:, None] == window[None, :])
    for i in range(config.vision_depth):
        block = f"visual.blocks.{i}."
        windowed = qwen25 and i not in config.full_attention_blocks
        x = x + _attention(weights, block + "attn.", _norm(weights, block + "norm1", x),
                           rows, cols, config, in_window if windowed else None)
        h = _norm(weights, block + "norm2", x)
        if qwen25:
            h = jax.nn.silu(_dense(weights, block + "mlp.gate_proj", h)) * _dense(
                weights, block + "mlp.up_proj", h)
            x = x + _dense(weights, block + "mlp.down_proj", h)
        else:
            h = _dense(weights, block + "mlp.fc1", h)
            x = x + _dense(weights, block + "mlp.fc2", h * jax.nn.sigmoid(1.702 * h))
    x = _norm(weights, "visual.merger.ln_q", x)
    x = x.reshape(x.shape[0], -1, x.shape[-1] * config.spatial_merge ** 2)
    x = jax.nn.gelu(_dense(weights, "visual.merger.mlp.0", x), approximate=False)
    return _dense(weights, "visual.merger.mlp.2", x)


def _attention(weights, name, x, rows, cols, config, allowed):
    heads = config.vision_heads
    head_dim = x.shape[-1] // heads
    qkv = _dense(weights, name + "qkv", x).reshape(*x.shape[:2], 3, heads, head_dim)
    q, k = (_rotate(qkv[:, :, i], rows, cols, config.vision_theta) for i in (0, 1))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim)
    if allowed is not None:
        scores = jnp.where(allowed, scores, -jnp.inf)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, -1), qkv[:, :, 2])
    return _dense(weights, name + "proj", out.reshape(x.shape))


def _rotate(x, rows, cols, theta):
    """x: [B, N, heads, d] turned by each patch's row (frequencies 0..d/4) and column (d/4..d/2),
    rotate-half over the whole head."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / theta ** (jnp.arange(0, half, 2, dtype=jnp.float32) / half)
    angles = jnp.concatenate([rows[:, None] * inv_freq, cols[:, None] * inv_freq], -1)
    cos, sin = jnp.cos(angles)[:, None], jnp.sin(angles)[:, None]
    first, second = x[..., :half], x[..., half:]
    return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], -1)


def _norm(weights, name, x, eps=1e-6):
    """LayerNorm where the checkpoint has a bias (Qwen2-VL), RMSNorm where not (2.5)."""
    if name + ".bias" in weights:
        centred = x - x.mean(-1, keepdims=True)
        x = centred / jnp.sqrt((centred ** 2).mean(-1, keepdims=True) + eps)
        return x * weights[name + ".weight"] + weights[name + ".bias"]
    return x / jnp.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * weights[name + ".weight"]


def _linear(weights, name, width):
    """The Conv3d patch embedding [width, 3, T, P, P] as a [3 * T * P * P, width] matrix."""
    return weights[name + ".weight"].reshape(width, -1).T


def _dense(weights, name, x):
    return x @ weights[name + ".weight"].T + weights[name + ".bias"]

"""Reading a downloaded Qwen2-VL / Qwen2.5-VL folder (Hugging Face layout): its config and its
weights, and the decoder's weights into the policy's model.

    config = read_config("Qwen2.5-VL-3B-Instruct")      # PretrainedConfig: both layouts
    weights = read_weights("Qwen2.5-VL-3B-Instruct")    # key -> array, one file or sharded
    model = decoder_model(config, weights)               # the text decoder, weights in

Nothing is downloaded: the folder is the user's. What is here so far: the config, the
weights, the text decoder with M-RoPE (`ModelConfig.mrope_section`, positions from
`model.mrope_positions`) and the vision tower (`policy.qwen_vision`); `logits` runs the whole
checkpoint on token ids and frames. On tiny random checkpoints written by transformers the
logits agree with transformers' within 1e-4 (Qwen2-VL) and 3e-4 (Qwen2.5-VL), on text, and on
text with an image in left-padded rows (tests/test_pretrained.py). Not yet: the checkpoint's
own tokenizer and chat template, M-RoPE through `VLM.__call__` / prefill / the cached decode
(so sampling), and `--model DIR` on the command lines (issue 14).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open

from policy import model as vlm, qwen_vision

ARCHITECTURES = {"Qwen2VLForConditionalGeneration": "qwen2-vl",
                 "Qwen2_5_VLForConditionalGeneration": "qwen2.5-vl"}
WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """What a checkpoint's config.json says, in one layout whatever the file's."""

    variant: str  # "qwen2-vl" or "qwen2.5-vl"
    vocab_size: int
    width: int
    depth: int
    heads: int
    kv_heads: int
    mlp_width: int
    rope_theta: float
    mrope_section: tuple[int, ...]
    norm_eps: float
    tie_embeddings: bool
    vision_width: int
    vision_depth: int
    vision_heads: int
    vision_mlp: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge: int
    in_channels: int
    window_size: int | None  # pixels (2.5 only)
    full_attention_blocks: tuple[int, ...]  # 2.5: the blocks outside the windows
    vision_theta: float
    image_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int

    def model_config(self, dtype: str = "float32") -> vlm.ModelConfig:
        """The policy's ModelConfig for the decoder: Qwen's layout (no learned positions, no
        recency bias, the checkpoint's theta and head)."""
        return vlm.ModelConfig(
            vocab_size=self.vocab_size, width=self.width, depth=self.depth, heads=self.heads,
            kv_heads=self.kv_heads, mlp_width=self.mlp_width, rope_theta=self.rope_theta,
            mrope_section=self.mrope_section, learned_positions=0, embed_std=None, recency_bias=False, norm_eps=self.norm_eps,
            tie_embeddings=self.tie_embeddings, dtype=dtype)


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: a Hugging Face checkpoint folder holds "
                                "config.json and model.safetensors (or an index and shards)")
    with open(path) as f:
        return json.load(f)


def read_config(folder: str) -> PretrainedConfig:
    """The folder's config.json, flat (text settings at the top, older files) or nested
    (`text_config` / `vision_config`); rope settings in `rope_scaling` or `rope_parameters`."""
    raw = _read_json(os.path.join(folder, "config.json"))
    names = raw.get("architectures") or []
    variant = next((ARCHITECTURES[n] for n in names if n in ARCHITECTURES), None)
    if variant is None:
        raise ValueError(f"{folder}: architecture {names} is not one of {sorted(ARCHITECTURES)}")
    text = {**raw, **raw.get("text_config", {})}
    vision = raw.get("vision_config", {})
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    section = tuple(rope.get("mrope_section", ()))
    if section and 2 * sum(section) != head_dim:
        raise ValueError(f"{folder}: mrope_section {list(section)} does not split head size "
                         f"{head_dim} (twice its sum must be the head size)")
    if variant == "qwen2-vl":
        vision_width = vision["embed_dim"]
        vision_mlp = int(vision_width * vision.get("mlp_ratio", 4))
    else:
        vision_width, vision_mlp = vision["hidden_size"], vision["intermediate_size"]
    vision_rope = vision.get("rope_parameters") or {}
    return PretrainedConfig(
        variant=variant, vocab_size=text["vocab_size"], width=text["hidden_size"],
        depth=text["num_hidden_layers"], heads=text["num_attention_heads"],
        kv_heads=text.get("num_key_value_heads", text["num_attention_heads"]),
        mlp_width=text["intermediate_size"],
        rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 1e6))),
        mrope_section=section, norm_eps=float(text.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(raw.get("tie_word_embeddings", text.get("tie_word_embeddings"))),
        vision_width=vision_width, vision_depth=vision["depth"],
        vision_heads=vision["num_heads"], vision_mlp=vision_mlp,
        patch_size=vision.get("patch_size", 14),
        temporal_patch_size=vision.get("temporal_patch_size", 2),
        spatial_merge=vision.get("spatial_merge_size", 2),
        in_channels=vision.get("in_channels", vision.get("in_chans", 3)),
        window_size=vision.get("window_size"),
        full_attention_blocks=tuple(vision.get("fullatt_block_indexes", ())),
        vision_theta=float(vision_rope.get("rope_theta", 1e4)),
        image_token_id=raw["image_token_id"], vision_start_token_id=raw["vision_start_token_id"],
        vision_end_token_id=raw["vision_end_token_id"])


def read_weights(folder: str, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Every tensor of the folder, one file or sharded (`model.safetensors.index.json`), as
    `dtype` (bfloat16 checkpoints are read as they are stored, then cast)."""
    index = os.path.join(folder, INDEX)
    if os.path.exists(index):
        files = sorted(set(_read_json(index)["weight_map"].values()))
    else:
        files = [WEIGHTS]
    weights = {}
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found (named by {INDEX})" if len(files) > 1
                                    or os.path.exists(index) else f"{path} not found")
        with safe_open(path, framework="flax") as f:
            for key in f.keys():
                weights[key] = f.get_tensor(key).astype(dtype)
    return weights


def decoder_model(config: PretrainedConfig, weights: dict[str, jax.Array],
                  dtype: str = "float32") -> vlm.VLM:
    """The policy's VLM with the checkpoint's text decoder (embeddings, layers, final norm,
    head) in place; its vision tower stays random (see the module docstring). ValueError
    naming the key for a missing tensor or a shape that does not match."""
    model = vlm.create(config.model_config(dtype), config.image_token_id)
    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    for key, path in vlm.hf_names(model).items():
        if key.startswith("visual."):
            continue
        if key not in weights:
            raise ValueError(f"the checkpoint has no tensor {key!r}")
        value = weights[key]
        if path[-1] == "kernel":
            value = value.T  # PyTorch stores Linear weights as [out, in]
        current = flat[path].get_value()
        if value.shape != current.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} in the checkpoint, "
                             f"{tuple(current.shape)} expected")
        flat[path].set_value(jnp.asarray(value, current.dtype))
    nnx.update(model, nnx.from_flat_state(flat))
    return model


def logits(model: vlm.VLM, weights: dict, config: PretrainedConfig, tokens: jax.Array,
           frames: jax.Array, valid: jax.Array) -> jax.Array:
    """float32[B, T, vocab]: the checkpoint on token ids int32[B, T] holding one image each
    (`<|image_pad|>` once per image token) and frames uint8[B, H, W, 3]; valid: bool[B, T],
    False on left padding. The image tokens come from `qwen_vision.image_tokens`, the
    positions from `model.mrope_positions`."""
    tokens = jnp.asarray(tokens, jnp.int32)
    image = qwen_vision.image_tokens(weights, config, jnp.asarray(frames))  # [B, N, width]
    x = model.model.embed_tokens(tokens)
    is_image = tokens == config.image_token_id
    slot = jnp.clip(jnp.cumsum(is_image, axis=1) - 1, 0, image.shape[1] - 1)
    x = jnp.where(is_image[..., None], jnp.take_along_axis(image, slot[..., None], 1), x)
    side = config.patch_size * config.spatial_merge
    grid = (frames.shape[1] // side, frames.shape[2] // side)
    positions, _ = vlm.mrope_positions(is_image, jnp.asarray(valid), grid)
    return embedded_logits(model, x, positions, jnp.asarray(valid))


def text_logits(model: vlm.VLM, tokens: np.ndarray) -> jax.Array:
    """float32[B, T, vocab]: the decoder's logits for text-only token ids int32[B, T] (no image:
    M-RoPE's three position ids are all equal)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    line = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    positions = jnp.stack([line] * 3) if model.cfg.mrope_section else line
    return embedded_logits(model, model.model.embed_tokens(tokens), positions,
                           jnp.ones(tokens.shape, bool))


def embedded_logits(model: vlm.VLM, x: jax.Array, positions: jax.Array,
                    valid: jax.Array) -> jax.Array:
    """float32[B, T, vocab]: the decoder on input embeddings x: [B, T, width] (text and image
    tokens alike), at positions int32[3, B, T] (M-RoPE; `model.mrope_positions`) or int32[B, T];
    valid: bool[B, T], False on left padding."""
    line = positions[0] if model.cfg.mrope_section else positions  # for the recency bias
    x, _ = model._layers(x, positions, None, 0, valid, line)
    return model.logits(x)

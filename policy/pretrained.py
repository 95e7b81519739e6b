"""Reading a downloaded Qwen2-VL / Qwen2.5-VL folder (Hugging Face layout): its config and its
weights, and the decoder's weights into the policy's model.

    config = read_config("Qwen2.5-VL-3B-Instruct")      # PretrainedConfig: both layouts
    weights = read_weights("Qwen2.5-VL-3B-Instruct")    # key -> array, one file or sharded
    model = decoder_model(config, weights)               # the text decoder, weights in

    config, model, weights, tokenizer = load("Qwen2.5-VL-3B-Instruct")   # all of it
    ids = prompt_ids(tokenizer, config, env.instructions(), image_token_count(config, frame.shape))

    python -m policy.pretrained Qwen2.5-VL-3B-Instruct --compare   # against transformers

Nothing is downloaded: the folder is the user's. What is here so far: the config, the
weights, the text decoder with M-RoPE (`ModelConfig.mrope_section`, positions from
`model.mrope_positions`), the vision tower (`policy.qwen_vision`), the folder's tokenizer and
chat template (`prompt_ids`, the image placeholders expanded as transformers' processor does),
frame sizes the checkpoint reads unchanged (`check_frames`, `fitting_tile_px`); `logits` runs
the whole checkpoint on token ids and frames, `prefill` and `decode` with a key/value cache
(M-RoPE positions and the rope delta kept in it), `greedy_batch` decodes with them. On tiny
random checkpoints written by transformers the float32 logits are within 1e-4 of transformers'
float64 ones (or, on Qwen2.5-VL's image tokens, no further from them than transformers' own
float32), on text, and on text with an image in left-padded rows (tests/test_pretrained.py).
The folder as the policy of `policy.sample`, `policy.sft` and `policy.train` (`--model
DIR`) is `policy.pretrained_model`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from flax import nnx
from safetensors import safe_open

import jaxgym
import render
from jaxgym import text as game_text
from jaxgym.core import Env
from policy import model as vlm, qwen_vision

PIXEL_BOUNDS = (56 * 56, 28 * 28 * 1280)  # Qwen's image processor: min_pixels, max_pixels
IMAGE_TOKENS = {"image_token_id": "<|image_pad|>", "vision_start_token_id": "<|vision_start|>",
                "vision_end_token_id": "<|vision_end|>"}  # config.json's name -> the token
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


def embed(model: vlm.VLM, weights: dict, config: PretrainedConfig, tokens: jax.Array,
          frames: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(input embeddings float32[B, T, width] with the image tokens over the placeholders,
    M-RoPE positions int32[3, B, T], int32[B] the position after the last token) for token ids
    int32[B, T] holding one image each (`<|image_pad|>` once per image token) and frames
    uint8[B, H, W, 3]; valid: bool[B, T], False on left padding. The image tokens come from
    `qwen_vision.image_tokens`, the positions from `model.mrope_positions`."""
    tokens = jnp.asarray(tokens, jnp.int32)
    image = qwen_vision.image_tokens(weights, config, jnp.asarray(frames))  # [B, N, width]
    x = model.model.embed_tokens(tokens)
    is_image = tokens == config.image_token_id
    slot = jnp.clip(jnp.cumsum(is_image, axis=1) - 1, 0, image.shape[1] - 1)
    x = jnp.where(is_image[..., None], jnp.take_along_axis(image, slot[..., None], 1), x)
    side = config.patch_size * config.spatial_merge
    grid = (frames.shape[1] // side, frames.shape[2] // side)
    positions, delta = vlm.mrope_positions(is_image, jnp.asarray(valid), grid)
    return x, positions, jnp.sum(valid, axis=1, dtype=jnp.int32) + delta


def logits(model: vlm.VLM, weights: dict, config: PretrainedConfig, tokens: jax.Array,
           frames: jax.Array, valid: jax.Array) -> jax.Array:
    """float32[B, T, vocab]: the checkpoint on token ids int32[B, T] holding one image each
    and frames uint8[B, H, W, 3] (`embed`); valid: bool[B, T], False on left padding."""
    x, positions, _ = embed(model, weights, config, tokens, frames, valid)
    return embedded_logits(model, x, positions, jnp.asarray(valid))


def prefill(model: vlm.VLM, weights: dict, config: PretrainedConfig, tokens: jax.Array,
            frames: jax.Array, valid: jax.Array, cache_len: int) -> tuple[jax.Array, dict]:
    """The prompt through the checkpoint into a key/value cache of `cache_len` slots:
    (float32[B, vocab] logits after the last prompt token, cache). The cache keeps each
    row's next M-RoPE position (text after an image resumes past its grid: the rope delta)."""
    b, t = tokens.shape
    cfg = model.cfg
    valid = jnp.asarray(valid)
    x, positions, next_position = embed(model, weights, config, tokens, frames, valid)
    shape = (b, cfg.kv_heads, cache_len, cfg.head_dim)
    empty = [(jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype))] * cfg.depth
    key_valid = jnp.zeros((b, cache_len), bool).at[:, :t].set(valid)
    key_positions = jnp.zeros((b, cache_len), jnp.int32)  # for the recency bias: off here
    x, kv = model._layers(x, positions, empty, 0, key_valid, key_positions)
    cache = dict(kv=kv, key_valid=key_valid, key_positions=key_positions, index=jnp.int32(t),
                 position=next_position)
    return model.logits(x[:, -1]), cache


def decode(model: vlm.VLM, token: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
    """One cached step of the checkpoint: token int32[B] into slot `cache["index"]` at each
    row's next position (the same on M-RoPE's three axes); (float32[B, vocab], cache)."""
    index = cache["index"]
    key_valid = jax.lax.dynamic_update_slice_in_dim(
        cache["key_valid"], jnp.ones((token.shape[0], 1), bool), index, 1)
    line = cache["position"][:, None]
    positions = jnp.stack([line] * 3) if model.cfg.mrope_section else line
    x = model.model.embed_tokens(token[:, None])
    x, kv = model._layers(x, positions, cache["kv"], index, key_valid, cache["key_positions"])
    cache = dict(cache, kv=kv, key_valid=key_valid, index=index + 1,
                 position=cache["position"] + 1)
    return model.logits(x[:, 0]), cache


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


# ---- text and images as the checkpoint expects them ----------------------------------------


def read_tokenizer(folder: str, config: PretrainedConfig):
    """The folder's own tokenizer (`AutoTokenizer`), checked against the config's image tokens.
    ValueError if it has no chat template or its special tokens are not the config's."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: no tokenizer could be read ({error}); a Qwen2-VL folder "
                         "holds tokenizer.json and tokenizer_config.json") from None
    if not tokenizer.chat_template:
        raise ValueError(f"{folder}: the tokenizer has no chat template")
    for name, token in IMAGE_TOKENS.items():
        if tokenizer.convert_tokens_to_ids(token) != getattr(config, name):
            raise ValueError(f"{folder}: the tokenizer gives {token} id "
                             f"{tokenizer.convert_tokens_to_ids(token)}, config.json's {name} "
                             f"is {getattr(config, name)}")
    return tokenizer


def pixel_bounds(folder: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) of the folder's image processor (Qwen's defaults without a
    preprocessor_config.json)."""
    path = os.path.join(folder, "preprocessor_config.json")
    raw = _read_json(path) if os.path.exists(path) else {}
    size = raw.get("size") or {}
    return (int(raw.get("min_pixels", size.get("shortest_edge", PIXEL_BOUNDS[0]))),
            int(raw.get("max_pixels", size.get("longest_edge", PIXEL_BOUNDS[1]))))


def _frames_fit(rows: int, cols: int, px: int, side: int, bounds: tuple[int, int]) -> bool:
    h, w = rows * px, cols * px
    return h % side == 0 and w % side == 0 and bounds[0] <= h * w <= bounds[1]


def fitting_tile_px(env: Env, config: PretrainedConfig,
                    bounds: tuple[int, int] = PIXEL_BOUNDS) -> int | None:
    """The `tile_px` nearest env's own whose frames the checkpoint reads unchanged (sides
    multiples of patch_size * spatial_merge, 28, and the area within the processor's pixel
    bounds); env's own if it fits, None if none in [8, 256] does."""
    side = config.patch_size * config.spatial_merge
    rows, cols = env.board_shape
    fits = [px for px in range(8, 257) if _frames_fit(rows, cols, px, side, bounds)]
    return min(fits, key=lambda px: (abs(px - env.tile_px), px)) if fits else None


def fitted(env: Env, config: PretrainedConfig, bounds: tuple[int, int] = PIXEL_BOUNDS) -> Env:
    """env drawn at `fitting_tile_px`; ValueError (`check_frames`'s) if no cell size fits."""
    px = fitting_tile_px(env, config, bounds)
    if px is None:
        check_frames(env, config, bounds)  # raises, saying why
    return dataclasses.replace(env, tile_px=px)


def check_frames(env: Env, config: PretrainedConfig, bounds: tuple[int, int] = PIXEL_BOUNDS) -> None:
    """ValueError, naming a `tile_px` that fits, unless env's frames are what the checkpoint's
    own preprocessing leaves as they are (no resize): `fitting_tile_px`."""
    px = fitting_tile_px(env, config, bounds)
    if px == env.tile_px:
        return
    rows, cols = env.board_shape
    side = config.patch_size * config.spatial_merge
    hint = f"use tile_px={px}" if px else "no tile_px in [8, 256] fits; change the board size"
    raise ValueError(f"{env.name}: {rows * env.tile_px}x{cols * env.tile_px} frames "
                     f"(tile_px={env.tile_px}) are not what {config.variant} reads unchanged: "
                     f"sides must be multiples of {side} pixels and the area within "
                     f"{bounds[0]:,}..{bounds[1]:,} pixels; {hint}")


def prompt_ids(tokenizer, config: PretrainedConfig, instructions: str, image_tokens: int) -> list[int]:
    """Token ids of one user turn in the checkpoint's chat template, an image then the
    instructions, with the generation prompt: `<|vision_start|>`, `<|image_pad|>` once per
    merged image token, `<|vision_end|>`, as transformers' processor expands them."""
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": instructions}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pad = tokenizer.convert_ids_to_tokens(config.image_token_id)
    if text.count(pad) != 1:
        raise ValueError(f"the chat template wrote {text.count(pad)} image placeholders "
                         f"({pad}) for one image")
    return tokenizer(text.replace(pad, pad * image_tokens), add_special_tokens=False)["input_ids"]


def image_token_count(config: PretrainedConfig, frame_shape: tuple[int, ...]) -> int:
    """Merged image tokens of one frame (H, W, ...)."""
    side = config.patch_size * config.spatial_merge
    return (frame_shape[0] // side) * (frame_shape[1] // side)


def load(folder: str, dtype: str = "float32"):
    """(config, model, weights, tokenizer) of a downloaded Qwen2-VL / Qwen2.5-VL folder: the
    policy's VLM with the checkpoint's decoder, every tensor (the vision tower reads its own,
    `qwen_vision`), and the folder's tokenizer."""
    config = read_config(folder)
    weights = read_weights(folder, jnp.dtype(dtype))
    return config, decoder_model(config, weights, dtype), weights, read_tokenizer(folder, config)


def greedy(model: vlm.VLM, weights: dict, config: PretrainedConfig, ids: list[int],
           frame: jax.Array, steps: int) -> list[int]:
    """`steps` greedy tokens after the prompt `ids` for one frame uint8[H, W, 3]."""
    return greedy_batch(model, weights, config, ids, frame[None], steps)[0][0]


def greedy_batch(model: vlm.VLM, weights: dict, config: PretrainedConfig, ids: list[int],
                 frames: jax.Array, steps: int, stop: int | None = None
                 ) -> tuple[list[list[int]], jax.Array]:
    """Greedy decoding of one prompt `ids` over frames uint8[B, H, W, 3]: (per frame, its new
    tokens up to and without `stop`, at most `steps`; float32[B, vocab] the logits after the
    prompt). A prefill, then cached decode steps, all in one jitted scan."""
    batch = frames.shape[0]
    tokens = jnp.broadcast_to(jnp.asarray(ids, jnp.int32), (batch, len(ids)))
    graphdef, state = nnx.split(model)
    new, first_logits = _greedy(graphdef, state, weights, config, tokens, jnp.asarray(frames),
                                steps, -1 if stop is None else stop)
    rows = [[int(x) for x in row] for row in np.asarray(new)]
    return [row[:row.index(stop)] if stop in row else row for row in rows], first_logits


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "steps"))
def _greedy(graphdef, state, weights, config, tokens, frames, steps, stop):
    model = nnx.merge(graphdef, state)
    logits_after, cache = prefill(model, weights, config, tokens, frames,
                                  jnp.ones(tokens.shape, bool), tokens.shape[1] + steps)

    def step(carry, _):
        logits_now, cache, done = carry
        token = jnp.where(done, stop, jnp.argmax(logits_now, axis=-1).astype(jnp.int32))
        logits_next, cache = decode(model, token, cache)
        return (logits_next, cache, done | (token == stop)), token

    done = jnp.zeros(tokens.shape[0], bool)
    _, new = jax.lax.scan(step, (logits_after, cache, done), None, length=steps)
    return new.T, logits_after


class PretrainedPolicy:
    """Zero-shot play by a downloaded Qwen2-VL / Qwen2.5-VL folder (`policy.evaluate --model
    DIR`): each board's frame and its game's full instructions in the folder's chat template,
    greedy decoding (`greedy_batch`) up to `max_tokens` or `<|im_end|>`; the texts are scored
    like a server's replies (`respond_texts`). Frames must fit the checkpoint
    (`games_for`)."""

    prompt_style, image_first, restate_board = "full", False, False

    def __init__(self, folder: str, max_tokens: int = 256, dtype: str = "float32"):
        self.folder, self.max_tokens = folder, max_tokens
        self.config, self.model, self.weights, self.tokenizer = load(folder, dtype)
        self.stop = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __repr__(self) -> str:
        return f"PretrainedPolicy({self.folder!r}, {self.config.variant})"

    def fitted(self, env: Env) -> Env:
        """env drawn at a cell size this checkpoint reads unchanged (`fitted`)."""
        return fitted(env, self.config, pixel_bounds(self.folder))

    def respond_texts(self, games, states, frames, key, step: int) -> list[str]:
        """One reply per board (board order), game by game; greedy, so `key` is unused."""
        frames = jnp.asarray(frames)
        texts, first = [], 0
        for env, state in zip(games.envs, states):
            n = len(state.board)
            prompt = game_text.prompt(env, self.prompt_style)
            ids = prompt_ids(self.tokenizer, self.config, prompt,
                             image_token_count(self.config, frames.shape[1:]))
            new, _ = greedy_batch(self.model, self.weights, self.config, ids,
                                  frames[first:first + n], self.max_tokens, self.stop)
            texts += [self.tokenizer.decode(row) for row in new]
            first += n
        return texts


def reference_greedy(folder: str, config: PretrainedConfig, ids: list[int], frame: np.ndarray,
                     steps: int, dtype: str = "float64") -> tuple[list[int], np.ndarray]:
    """(`steps` greedy tokens from transformers' own `generate`, float64[len(ids), vocab] the
    prompt's logits), eager attention, its own image processor, computed in `dtype`: the
    reference `--compare` checks against. transformers' own float32 forward is off its float64
    one by up to 2e-4 on Qwen2.5-VL (rounding), more than jaxgym's float32 is. Needs torch."""
    import torch  # the hf extra

    torch_dtype = getattr(torch, dtype)
    cls = (transformers.Qwen2VLForConditionalGeneration if config.variant == "qwen2-vl"
           else transformers.Qwen2_5_VLForConditionalGeneration)
    # loaded in the checkpoint's own dtype, then widened: exact, on any transformers version
    model = cls.from_pretrained(folder, attn_implementation="eager").to(torch_dtype).eval()
    processed = transformers.Qwen2VLImageProcessorPil()(images=[frame], return_tensors="pt")
    row = torch.tensor([ids])
    inputs = dict(input_ids=row, pixel_values=processed["pixel_values"].to(torch_dtype),
                  image_grid_thw=processed["image_grid_thw"],
                  mm_token_type_ids=(row == config.image_token_id).long())
    with torch.no_grad():
        prompt_logits = model(**inputs).logits[0].double().numpy()
        new = model.generate(**inputs, attention_mask=torch.ones_like(row), do_sample=False,
                             max_new_tokens=steps, min_new_tokens=steps)
    return new[0, len(ids):].tolist(), prompt_logits


def compare(folder: str, game: str = "swap", preset: str | None = "easy", steps: int = 16,
            tolerance: float = 1e-4, reference_dtype: str = "float64", out=print) -> bool:
    """`python -m policy.pretrained DIR --compare`: jaxgym (float32) and transformers (in
    `reference_dtype`) on one board of `game` in the checkpoint's chat template; True when the
    prompt's logits agree within `tolerance` and the `steps` greedy tokens are the same."""
    config, model, weights, tokenizer = load(folder)
    env = fitted(jaxgym.make(game, preset=preset), config, pixel_bounds(folder))
    frame = render.frame(env, env.reset(jax.random.key(0)))
    ids = prompt_ids(tokenizer, config, env.instructions(), image_token_count(config, frame.shape))
    out(f"{folder}: {config.variant}, {len(ids)} prompt tokens, {frame.shape[0]}x{frame.shape[1]} "
        f"{game} frame")
    our_logits = logits(model, weights, config, jnp.asarray([ids]), frame[None],
                        jnp.ones((1, len(ids)), bool))[0]
    ours = greedy(model, weights, config, ids, frame, steps)
    try:
        theirs, their_logits = reference_greedy(folder, config, ids, np.asarray(frame), steps,
                                                reference_dtype)
    except ImportError:
        out("torch is not installed (pip install torch): jaxgym's side only, nothing compared")
        out(f"greedy tokens: {ours}")
        return True
    gap = float(np.abs(np.asarray(our_logits) - their_logits).max())
    same = ours == theirs
    out(f"largest logit difference {gap:.2e} from transformers in {reference_dtype} (tolerance "
        f"{tolerance:.0e}; logits up to "
        f"{np.abs(their_logits).max():.2f}); {steps} greedy tokens "
        f"{'agree' if same else 'differ: ' + str(ours) + ' vs ' + str(theirs)}")
    return gap <= tolerance and same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.pretrained", description=(
        "Check a downloaded Qwen2-VL / Qwen2.5-VL folder: jaxgym against transformers."))
    parser.add_argument("folder")
    parser.add_argument("--compare", action="store_true",
                        help="run jaxgym and transformers on a rendered board and compare")
    parser.add_argument("--game", default="swap")
    parser.add_argument("--preset", default="easy")
    parser.add_argument("--steps", type=int, default=16, help="greedy tokens compared")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed logit difference (jaxgym in float32)")
    parser.add_argument("--reference-dtype", default="float64", choices=("float64", "float32"),
                        help="transformers' precision: float64 is the exact forward (twice "
                             "float32's memory); its float32 rounding alone reaches 2e-4")
    args = parser.parse_args(argv)
    if not args.compare:
        config = read_config(args.folder)
        print(config)
        return 0
    try:
        ok = compare(args.folder, args.game, args.preset, args.steps, args.tolerance,
                     args.reference_dtype)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

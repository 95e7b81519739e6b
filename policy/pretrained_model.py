"""A downloaded Qwen2-VL / Qwen2.5-VL folder as the policy: the model and the tokenizer that
`policy.sample`, `policy.sft`, `policy.train` and `policy.evaluation` use for the from-scratch
VLM, so the same jobs train and play a real checkpoint.

    graphdef, params, tokenizer, model_cfg = load_policy("Qwen2.5-VL-3B-Instruct")
    samples = sample.generate(graphdef, params, prompt, frames, key, ...)   # as for vlm.VLM

`QwenVLM` is an `nnx.Module` with `vlm.VLM`'s methods (`__call__`, `encode_prefix`, `prefill`,
`decode`, `text_logits`): the checkpoint's decoder (`policy.pretrained.decoder_model`) and its
vision tower's tensors as parameters (read by `policy.qwen_vision`), M-RoPE positions counted
after the shared instructions. `ChatTokenizer` gives the folder's own tokenizer
`GameTokenizer`'s interface: the prompt in its chat template, the end of turn `<|im_end|>`.
Its responses are scored on the host from their text (`policy.rewards.host_rewards`, the same
numbers as the device path of the project's tokenizer).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from policy import model as vlm, pretrained
from policy.episodes import GameSet


class QwenVLM(nnx.Module):
    """The checkpoint, trainable and sampled like `vlm.VLM`. `config`: its
    `pretrained.PretrainedConfig`; `decoder`: the text decoder with its weights in; `vision`:
    its `visual.*` tensors, by their safetensors names."""

    def __init__(self, config: pretrained.PretrainedConfig, decoder: vlm.VLM,
                 vision: dict[str, jax.Array]):
        self.config, self.cfg, self.image_pad_id = config, decoder.cfg, config.image_token_id
        self.decoder = decoder
        self.visual = nnx.Dict({name: nnx.Param(value) for name, value in vision.items()})

    def _lines(self, positions: jax.Array) -> jax.Array:
        """Text positions int32[B, T] as M-RoPE's three equal axes (or as they are, 1-D)."""
        return jnp.stack([positions] * 3) if self.cfg.mrope_section else positions

    def _embed(self, tokens, frames, valid, offset):
        """(embeddings [B, T, width], positions [3, B, T], int32[B] the next position) of
        tokens holding one image each, following `offset` (int32[B]) shared tokens."""
        weights = {name: param[...] for name, param in self.visual.items()}
        x, positions, after = pretrained.embed(self.decoder, weights, self.config, tokens,
                                               frames, valid)
        if not self.cfg.mrope_section:
            positions = positions[0]
        return x, positions + offset[:, None], after + offset

    def _key_line(self, positions):
        return positions[0] if self.cfg.mrope_section else positions

    def encode_prefix(self, tokens: jax.Array, valid: jax.Array | None = None) -> dict:
        """`vlm.VLM.encode_prefix`: text shared by many sequences (no image)."""
        valid = jnp.ones(tokens.shape, bool) if valid is None else valid
        line = vlm.positions_of(valid)
        _, kv = self.decoder._layers(self.decoder.model.embed_tokens(tokens), self._lines(line),
                                     None, 0, valid, line)
        return dict(kv=kv, valid=valid, length=jnp.sum(valid, axis=1, dtype=jnp.int32))

    def __call__(self, tokens: jax.Array, frames: jax.Array, valid: jax.Array | None = None,
                 prefix: dict | None = None, group: jax.Array | None = None) -> jax.Array:
        """`vlm.VLM.__call__`: float32[B, T, vocab]."""
        valid = jnp.ones(tokens.shape, bool) if valid is None else valid
        context, offset = self.decoder._context(prefix, group, tokens.shape[0])
        x, positions, _ = self._embed(tokens, frames, valid, offset)
        x, _ = self.decoder._layers(x, positions, None, 0, valid, self._key_line(positions),
                                    context)
        return self.decoder.logits(x)

    def text_logits(self, tokens: jax.Array, positions: jax.Array,
                    valid: jax.Array) -> jax.Array:
        """`vlm.VLM.text_logits`: text alone at given (1-D) positions."""
        x, _ = self.decoder._layers(self.decoder.model.embed_tokens(tokens),
                                    self._lines(positions), None, 0, valid, positions)
        return self.decoder.logits(x)

    def prefill(self, tokens: jax.Array, frames: jax.Array, valid: jax.Array, cache_len: int,
                prefix: dict | None = None,
                group: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """`vlm.VLM.prefill`; the cache keeps each row's next position (the rope delta)."""
        b, t = tokens.shape
        cfg = self.cfg
        shape = (b, cfg.kv_heads, cache_len, cfg.head_dim)
        empty = [(jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype))] * cfg.depth
        key_valid = jnp.zeros((b, cache_len), bool).at[:, :t].set(valid)
        context, offset = self.decoder._context(prefix, group, b)
        x, positions, after = self._embed(tokens, frames, valid, offset)
        key_positions = jnp.zeros((b, cache_len), jnp.int32).at[:, :t].set(
            self._key_line(positions))
        x, kv = self.decoder._layers(x, positions, empty, 0, key_valid, key_positions, context)
        cache = dict(kv=kv, key_valid=key_valid, key_positions=key_positions, index=jnp.int32(t),
                     context=context, position=after)
        return self.decoder.logits(x[:, -1]), cache

    def decode(self, token: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """`vlm.VLM.decode`: one token a row at its next position."""
        index = cache["index"]
        key_valid = jax.lax.dynamic_update_slice_in_dim(
            cache["key_valid"], jnp.ones((token.shape[0], 1), bool), index, 1)
        line = cache["position"][:, None]
        key_positions = jax.lax.dynamic_update_slice_in_dim(cache["key_positions"], line,
                                                            index, 1)
        x, kv = self.decoder._layers(self.decoder.model.embed_tokens(token[:, None]),
                                     self._lines(line), cache["kv"], index, key_valid,
                                     key_positions, cache["context"])
        cache = dict(cache, kv=kv, key_valid=key_valid, key_positions=key_positions,
                     index=index + 1, position=cache["position"] + 1)
        return self.decoder.logits(x[:, 0]), cache


class ChatTokenizer:
    """The folder's tokenizer with `GameTokenizer`'s interface (`encode`, `decode`,
    `decode_response`, `prompt_parts`, `prompt_ids`, `save`; `pad_id`, `eos_id`,
    `image_pad_id`, `vocab_size`). The prompt is one user turn in the chat template, the
    instructions then the image (`image_first`: the image first, as Qwen's examples have it),
    and the generation prompt; the response ends with `<|im_end|>`."""

    def __init__(self, folder: str, config: pretrained.PretrainedConfig):
        self.folder, self.config = folder, config
        self.tokenizer = pretrained.read_tokenizer(folder, config)
        self.vocab_size = config.vocab_size
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.im_start_id = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.convert_tokens_to_ids(
            "<|endoftext|>")
        self.image_pad_id = config.image_token_id
        self.vision_start_id = config.vision_start_token_id
        if self.pad_id is None or self.eos_id is None:
            raise ValueError(f"{folder}: the tokenizer has no <|im_end|> or padding token")

    def __repr__(self) -> str:
        return f"ChatTokenizer({self.folder!r})"

    # Loads of the same folder compare equal: compiled functions that take the tokenizer as a
    # static argument (the rollout) are shared by them.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatTokenizer) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def _key(self):
        return os.path.abspath(self.folder), self.config

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in np.asarray(ids).ravel() if int(i) != self.pad_id]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def decode_response(self, ids: Sequence[int], mask: Sequence[bool] | None = None) -> str:
        """The text of one sampled response: tokens under `mask`, up to the end of turn."""
        ids = np.asarray(ids).ravel()
        if mask is not None:
            ids = ids[np.asarray(mask, bool).ravel()]
        ends = np.flatnonzero(ids == self.eos_id)
        return self.decode(ids[: ends[0]] if ends.size else ids)

    def prompt_parts(self, prompt: str, num_image_tokens: int,
                     image_first: bool = False) -> tuple[list[int], list[int]]:
        """(what every board of a game shares: the turn up to the image, each board's own
        part: the image placeholders through the generation prompt)."""
        content = [{"type": "text", "text": prompt}, {"type": "image"}]
        messages = [{"role": "user", "content": content[::-1] if image_first else content}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        pad = self.tokenizer.convert_ids_to_tokens(self.image_pad_id)
        if text.count(pad) != 1:
            raise ValueError(f"the chat template wrote {text.count(pad)} image placeholders "
                             f"({pad}) for one image")
        ids = self.encode(text.replace(pad, pad * num_image_tokens))
        start = ids.index(self.vision_start_id)
        return ids[:start], ids[start:]

    def prompt_ids(self, prompt: str, num_image_tokens: int,
                   image_first: bool = False) -> list[int]:
        prefix, rest = self.prompt_parts(prompt, num_image_tokens, image_first)
        return prefix + rest

    def save(self, folder: str | os.PathLike) -> None:
        """The tokenizer's files (`save_pretrained`), so a run folder is read without the
        download (`ChatTokenizer.load`)."""
        self.tokenizer.save_pretrained(folder)

    @classmethod
    def load(cls, folder: str, config: pretrained.PretrainedConfig) -> "ChatTokenizer":
        return cls(folder, config)


def model_config(config: pretrained.PretrainedConfig, dtype: str = "float32") -> vlm.ModelConfig:
    """The decoder's `ModelConfig`, with the checkpoint's patch size and merge, so that
    `num_image_tokens` counts the image tokens as the checkpoint makes them."""
    return dataclasses.replace(config.model_config(dtype), patch_size=config.patch_size,
                               spatial_merge=config.spatial_merge)


def create(folder: str, dtype: str = "float32") -> tuple[QwenVLM, ChatTokenizer]:
    """The folder's model (`QwenVLM`, parameters in `dtype`) and tokenizer."""
    config = pretrained.read_config(folder)
    weights = pretrained.read_weights(folder, jnp.dtype(dtype))
    decoder = pretrained.decoder_model(config, weights, dtype)
    decoder.cfg = model_config(config, dtype)
    del decoder.visual  # vlm.VLM's own (random) vision tower: the checkpoint's replaces it
    vision = {name: value for name, value in weights.items() if name.startswith("visual.")}
    model = QwenVLM(config, decoder, vision)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x.astype(dtype), params))  # the decoder's too
    return model, ChatTokenizer(folder, config)


def fit(games: GameSet, folder: str) -> GameSet:
    """`games` (one game) drawn at a cell size the checkpoint in `folder` reads unchanged
    (`pretrained.fitted`); ValueError for a mix, whose canvas no cell size fits alike."""
    if not games.single:
        raise ValueError("a checkpoint plays one game at a time (its frames are sized to fit "
                         "it); pass a single game")
    config = pretrained.read_config(folder)
    env = pretrained.fitted(games.envs[0], config, pretrained.pixel_bounds(folder))
    return dataclasses.replace(games, envs=(env,))


def load_policy(folder: str, dtype: str = "float32"):
    """(graphdef, params, tokenizer, model config) of a downloaded folder, as
    `checkpoint.load_policy` gives them for a trained run."""
    model, tokenizer = create(folder, dtype)
    graphdef, params = nnx.split(model)
    return graphdef, params, tokenizer, model.cfg

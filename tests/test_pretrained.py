"""policy.pretrained on tiny random Qwen2-VL and Qwen2.5-VL folders written by transformers
(every tensor randomised, so that a wrong layout moves the logits by about 1): both config
layouts, one file or shards, bfloat16, clear errors, and the text decoder's logits against
transformers'. Needs the `hf` extra (torch, transformers); skipped without it."""

import copy
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the hf extra (torch) is not installed")
transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

from policy import pretrained  # noqa: E402
from hf_checkpoints import TOKENS, hf_model, save_tokenizer  # noqa: E402

@pytest.fixture(scope="module", params=[("qwen2-vl", True), ("qwen2.5-vl", False)],
                ids=["qwen2-vl-tied", "qwen2.5-vl-untied"])
def folder(request, tmp_path_factory):
    variant, tied = request.param
    model = hf_model(variant, tied)
    out = str(tmp_path_factory.mktemp(variant))
    model.save_pretrained(out)
    save_tokenizer(out)
    return variant, tied, model, out


def test_config_reads_both_layouts(folder, tmp_path):
    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    assert (config.variant, config.tie_embeddings, config.mrope_section) == (variant, tied,
                                                                           (2, 3, 3))
    assert (config.width, config.depth, config.heads, config.kv_heads) == (64, 2, 4, 2)
    assert config.vision_width == 32 and config.patch_size == 14
    assert config.vision_mlp == (64 if variant == "qwen2-vl" else 48)
    if variant == "qwen2.5-vl":
        assert config.window_size == 56 and config.full_attention_blocks == (1,)
    # the older flat layout: text settings at the top, rope_scaling, in_chans
    raw = json.load(open(os.path.join(out, "config.json")))
    text = raw.pop("text_config")
    rope = text.pop("rope_parameters")
    flat = {**raw, **text, "rope_scaling": {"type": "mrope",
                                            "mrope_section": rope["mrope_section"]},
            "rope_theta": rope["rope_theta"]}
    flat["vision_config"]["in_chans"] = flat["vision_config"].pop("in_channels", 3)
    os.makedirs(tmp_path / "flat")
    json.dump(flat, open(tmp_path / "flat" / "config.json", "w"))
    assert pretrained.read_config(str(tmp_path / "flat")) == config


def test_the_text_decoder_matches_transformers_logits(folder):
    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    ours = pretrained.decoder_model(config, pretrained.read_weights(out))
    tokens = np.random.default_rng(0).integers(0, 280, (2, 12))
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(tokens)).logits.numpy()
    got = np.asarray(pretrained.text_logits(ours, tokens))
    assert np.abs(theirs).max() > 0.5  # randomised weights: logits of order 1
    np.testing.assert_allclose(got, theirs, atol=1e-4, rtol=0)


def test_shards_and_bfloat16_load_like_one_file(folder, tmp_path):
    variant, tied, model, out = folder
    one = pretrained.read_weights(out)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    assert os.path.exists(tmp_path / "sharded" / pretrained.INDEX)
    sharded = pretrained.read_weights(str(tmp_path / "sharded"))
    assert sharded.keys() == one.keys()
    for key in one:
        np.testing.assert_array_equal(np.asarray(sharded[key]), np.asarray(one[key]))
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    half = pretrained.read_weights(str(tmp_path / "bf16"))
    key = "model.embed_tokens.weight"
    assert half[key].dtype == np.float32
    np.testing.assert_allclose(np.asarray(half[key]), np.asarray(one[key]), rtol=1e-2, atol=1e-3)


def test_clear_errors(folder, tmp_path):
    variant, tied, model, out = folder
    with pytest.raises(FileNotFoundError, match="config.json"):
        pretrained.read_config(str(tmp_path))
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    raw = json.load(open(bad / "config.json"))
    json.dump(dict(raw, architectures=["LlamaForCausalLM"]), open(bad / "config.json", "w"))
    with pytest.raises(ValueError, match="LlamaForCausalLM"):
        pretrained.read_config(str(bad))
    os.remove(bad / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        pretrained.read_weights(str(bad))
    config = pretrained.read_config(out)
    weights = pretrained.read_weights(out)
    key = "model.layers.1.mlp.up_proj.weight"
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ": shape"):
        pretrained.decoder_model(config, {**weights, key: weights[key][:, :-1]})
    with pytest.raises(ValueError, match="no tensor 'model.norm.weight'"):
        pretrained.decoder_model(config, {k: v for k, v in weights.items()
                                          if k != "model.norm.weight"})


def test_mrope_positions_and_rotation_match_transformers(folder):
    """Two rows, left-padded, each: text, an image of 2 x 3 merged tokens, text."""
    import jax.numpy as jnp

    from policy import model as vlm

    variant, tied, model, out = folder
    rows, cols = 2, 3
    image = [TOKENS["vision_start_token_id"]] + [TOKENS["image_token_id"]] * (rows * cols) + [
        TOKENS["vision_end_token_id"]]
    sequences = [[5, 6, 7] + image + [8, 9], [5] + image + [8, 9, 10, 11]]
    width = max(map(len, sequences)) + 1
    ids = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), np.int64)
    for b, seq in enumerate(sequences):
        ids[b, width - len(seq):], mask[b, width - len(seq):] = seq, 1
    is_image = ids == TOKENS["image_token_id"]
    grid = torch.tensor([[1, 2 * rows, 2 * cols]] * 2)  # patches, before the 2x2 merge
    theirs, delta = model.model.get_rope_index(
        torch.tensor(ids), mm_token_type_ids=torch.tensor(is_image.astype(np.int64)),
        image_grid_thw=grid, attention_mask=torch.tensor(mask))
    ours, our_delta = vlm.mrope_positions(jnp.asarray(is_image), jnp.asarray(mask.astype(bool)),
                                          (rows, cols))
    valid = mask.astype(bool)
    np.testing.assert_array_equal(np.asarray(ours)[:, valid], theirs.numpy()[:, valid])
    np.testing.assert_array_equal(np.asarray(our_delta), delta.numpy().ravel())
    # the rotation: q * cos + rotate_half(q) * sin with transformers' M-RoPE cos and sin
    config = pretrained.read_config(out)
    q = np.random.default_rng(1).normal(size=(2, width, config.heads, 16)).astype(np.float32)
    cos, sin = model.model.language_model.rotary_emb(torch.zeros(1), theirs)
    cos, sin = cos.numpy()[:, :, None], sin.numpy()[:, :, None]
    half = np.concatenate([-q[..., 8:], q[..., :8]], -1)
    got = vlm.mrotary(jnp.asarray(q), jnp.asarray(theirs.numpy()), config.rope_theta,
                      config.mrope_section)
    np.testing.assert_allclose(np.asarray(got), q * cos + half * sin, atol=1e-5)
    # text only (three equal axes): M-RoPE is the 1-D rotary
    line = jnp.broadcast_to(jnp.arange(width), (2, width))
    np.testing.assert_allclose(
        np.asarray(vlm.mrotary(jnp.asarray(q), jnp.stack([line] * 3), 1e6, (2, 3, 3))),
        np.asarray(vlm.rotary(jnp.asarray(q), line, 1e6)), atol=1e-6)


def test_the_decoder_with_mrope_matches_transformers_on_image_positions(folder):
    """The decoder on the same input embeddings (image tokens included) at M-RoPE positions
    of left-padded rows with an image: logits within 1e-4 of transformers'."""
    import jax.numpy as jnp

    from policy import model as vlm

    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    ours = pretrained.decoder_model(config, pretrained.read_weights(out))
    rows, cols = 2, 2
    image = [TOKENS["vision_start_token_id"]] + [TOKENS["image_token_id"]] * 4 + [
        TOKENS["vision_end_token_id"]]
    sequences = [[5, 6] + image + [8, 9, 10], [5] + image + [8]]
    width = max(map(len, sequences))
    ids = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), bool)
    for b, seq in enumerate(sequences):
        ids[b, width - len(seq):], mask[b, width - len(seq):] = seq, True
    is_image = ids == TOKENS["image_token_id"]
    positions, _ = vlm.mrope_positions(jnp.asarray(is_image), jnp.asarray(mask), (rows, cols))
    embeds = np.random.default_rng(2).normal(0, 0.5, (2, width, config.width)).astype(np.float32)
    with torch.no_grad():
        hidden = model.model.language_model(
            inputs_embeds=torch.tensor(embeds), attention_mask=torch.tensor(mask.astype(np.int64)),
            position_ids=torch.tensor(np.asarray(positions).astype(np.int64))).last_hidden_state
        theirs = model.lm_head(hidden).numpy()
    got = np.asarray(pretrained.embedded_logits(ours, jnp.asarray(embeds), positions,
                                                jnp.asarray(mask)))
    np.testing.assert_allclose(got[mask], theirs[mask], atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(56, 84), (84, 140)])  # 84 x 140: windows cut at the edges
def test_the_vision_tower_matches_transformers(folder, size):
    import jax.numpy as jnp

    from policy import qwen_vision

    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    frame = np.random.default_rng(sum(size)).integers(0, 256, (1,) + size + (3,), np.uint8)
    processed = transformers.Qwen2VLImageProcessor(do_resize=False)(images=[frame[0]],
                                                                     return_tensors="pt")
    ours, _, _ = qwen_vision.patches(jnp.asarray(frame), config)
    np.testing.assert_allclose(np.asarray(ours[0]), processed["pixel_values"].numpy(), atol=1e-5)
    with torch.no_grad():
        theirs = model.model.visual(processed["pixel_values"],
                                    grid_thw=processed["image_grid_thw"]).pooler_output.numpy()
    got = np.asarray(qwen_vision.image_tokens(pretrained.read_weights(out), config,
                                              jnp.asarray(frame)))[0]
    assert got.shape == theirs.shape == (size[0] * size[1] // 28 ** 2, config.width)
    np.testing.assert_allclose(got, theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
    with pytest.raises(ValueError, match="multiple of 28"):
        qwen_vision.patches(jnp.zeros((1, 30, 56, 3), jnp.uint8), config)


@pytest.mark.parametrize("size", [(56, 56), (84, 140)])
def test_image_and_text_logits_match_transformers(folder, size):
    """The whole checkpoint, image and text: transformers' forward with its own processor's
    pixel values and M-RoPE (`mm_token_type_ids`), against jaxgym's, logits within 1e-4."""
    import jax.numpy as jnp

    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    ours = pretrained.decoder_model(config, pretrained.read_weights(out))
    frames = np.random.default_rng(3).integers(0, 256, (2,) + size + (3,), np.uint8)
    n = size[0] * size[1] // 28 ** 2
    image = [TOKENS["vision_start_token_id"]] + [TOKENS["image_token_id"]] * n + [
        TOKENS["vision_end_token_id"]]
    sequences = [[5, 6, 7] + image + [8, 9, 10], [5] + image + [8]]
    width = max(map(len, sequences))
    ids = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), bool)
    for b, seq in enumerate(sequences):
        ids[b, width - len(seq):], mask[b, width - len(seq):] = seq, True
    processed = transformers.Qwen2VLImageProcessor(do_resize=False)(images=list(frames),
                                                                     return_tensors="pt")
    inputs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(int)),
                  image_grid_thw=processed["image_grid_thw"],
                  mm_token_type_ids=torch.tensor((ids == TOKENS["image_token_id"]).astype(int)))
    with torch.no_grad():  # the exact forward (float64), and transformers' own float32 one
        exact = copy.deepcopy(model).double()(
            pixel_values=processed["pixel_values"].double(), **inputs).logits.numpy()
        theirs = model(pixel_values=processed["pixel_values"], **inputs).logits.numpy()
    got = np.asarray(pretrained.logits(ours, pretrained.read_weights(out), config,
                                       jnp.asarray(ids), jnp.asarray(frames), jnp.asarray(mask)))
    assert np.abs(exact[mask]).max() > 0.5
    # within 1e-4 of the exact logits, or no further from them than transformers' float32 is
    # (its rounding alone reaches 2e-4 on Qwen2.5-VL's image tokens here); a layout bug moves
    # logits by about 1
    ours_gap = np.abs(got[mask] - exact[mask]).max()
    their_gap = np.abs(theirs[mask] - exact[mask]).max()
    assert ours_gap <= max(1e-4, their_gap), (ours_gap, their_gap)


def test_the_folders_tokenizer_writes_the_prompt_in_its_chat_template(folder):
    import jaxgym

    variant, tied, model, out = folder
    config, _, _, tokenizer = pretrained.load(out)
    env = jaxgym.make("swap", preset="easy", tile_px=28)
    ids = pretrained.prompt_ids(tokenizer, config, env.instructions(), 16)
    start, end = ids.index(TOKENS["vision_start_token_id"]), ids.index(TOKENS["vision_end_token_id"])
    assert ids[start + 1:end] == [TOKENS["image_token_id"]] * 16
    assert ids.count(TOKENS["image_token_id"]) == 16
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert env.instructions() in text
    with pytest.raises(ValueError, match="image_token_id"):
        pretrained.read_tokenizer(out, dataclasses.replace(config, image_token_id=291))


def test_frames_are_drawn_at_sizes_the_processor_leaves_unchanged(folder):
    """A 4x4 board at tile_px 28 is 112x112: Qwen's own image processor (resize on) gives
    exactly the patches jaxgym reads; tile_px 32 is refused, naming 35 (4 x 35 = 140)."""
    import jax
    import jax.numpy as jnp

    import jaxgym
    import render
    from policy import qwen_vision

    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    env = jaxgym.make("swap", preset="easy", tile_px=28)
    pretrained.check_frames(env, config)
    frame = np.asarray(render.frame(env, env.reset(jax.random.key(0))))
    processed = transformers.Qwen2VLImageProcessorPil()(images=[frame], return_tensors="pt")
    assert processed["image_grid_thw"].tolist() == [[1, 8, 8]]
    ours, _, _ = qwen_vision.patches(jnp.asarray(frame[None]), config)
    np.testing.assert_allclose(np.asarray(ours[0]), processed["pixel_values"].numpy(), atol=1e-5)
    big = jaxgym.make("swap", preset="easy")
    with pytest.raises(ValueError, match="tile_px=35"):
        pretrained.check_frames(big, config)
    assert pretrained.fitting_tile_px(big, config) == 35
    tiny_bounds = (60 * 60, 80 * 80)  # 56x56 is too small, 84x84 too large
    with pytest.raises(ValueError, match="no tile_px"):
        pretrained.check_frames(big, config, tiny_bounds)


def test_compare_agrees_with_transformers_and_fails_when_jaxgym_differs(folder, tmp_path, capsys,
                                                                         monkeypatch):
    """`python -m policy.pretrained DIR --compare`: a rendered board in the chat template,
    logits and 16 greedy tokens against transformers'; exit 1 once jaxgym's side reads the
    pixels differently (a preprocessing bug), 2 for a folder that is not there."""
    from policy import qwen_vision

    variant, tied, model, out = folder
    assert pretrained.main([out, "--compare"]) == 0
    report = capsys.readouterr().out
    assert "16 greedy tokens agree" in report and "largest logit difference" in report
    monkeypatch.setattr(qwen_vision, "PIXEL_MEAN", qwen_vision.PIXEL_MEAN + 0.05)
    assert pretrained.main([out, "--compare", "--steps", "2"]) == 1
    assert pretrained.main([str(tmp_path / "missing"), "--compare"]) == 2


def test_evaluate_plays_a_downloaded_folder_zero_shot(folder, tmp_path):
    """`policy.evaluate --model DIR`: boards drawn at a size the checkpoint reads unchanged,
    replies decoded greedily in a batch (each the same as decoding its board alone)."""
    import jax
    import jax.numpy as jnp

    from policy import evaluate, episodes

    variant, tied, model, out = folder
    report = tmp_path / "eval.json"
    assert evaluate.main(["--game", "swap", "--model", out, "--boards", "2", "--max-tokens", "6",
                          "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["policy"] == "pretrained" and result["tile_px"] == 35
    assert result["variant"] == variant and 0 <= result["valid_move_rate"] <= 1
    policy = pretrained.PretrainedPolicy(out, max_tokens=6)
    env = jaxgym_env(policy)
    games = episodes.GameSet((env,))
    states = games.deal(jax.random.key(3), 2)
    frames = games.draw(states)
    texts = policy.respond_texts(games, states, frames, None, 0)
    ids = pretrained.prompt_ids(policy.tokenizer, policy.config, env.instructions(),
                                pretrained.image_token_count(policy.config, frames.shape[1:]))
    for b in range(2):
        alone, _ = pretrained.greedy_batch(policy.model, policy.weights, policy.config, ids,
                                           jnp.asarray(frames[b:b + 1]), 6, policy.stop)
        assert texts[b] == policy.tokenizer.decode(alone[0])
    with pytest.raises(SystemExit):
        evaluate.main(["--game", "mix", "--model", out])


def jaxgym_env(policy):
    import jaxgym

    return policy.fitted(jaxgym.make("swap", preset="easy"))


def test_prefill_and_cached_decode_equal_the_full_forward(folder):
    """Teacher-forced through the cache (M-RoPE positions resumed after the image, the rope
    delta in the cache), left-padded rows: the logits of the full forward, row by row."""
    import jax
    import jax.numpy as jnp

    variant, tied, model, out = folder
    config = pretrained.read_config(out)
    weights = pretrained.read_weights(out)
    ours = pretrained.decoder_model(config, weights)
    image = [TOKENS["vision_start_token_id"]] + [TOKENS["image_token_id"]] * 4 + [
        TOKENS["vision_end_token_id"]]
    prompts = [[5, 6, 7] + image + [8], [5] + image + [8, 9, 10]]
    follow = np.array([[11, 12, 13, 14], [21, 22, 23, 24]])
    width = max(map(len, prompts))
    ids = np.zeros((2, width), np.int32)
    valid = np.zeros((2, width), bool)
    for b, seq in enumerate(prompts):
        ids[b, width - len(seq):], valid[b, width - len(seq):] = seq, True
    frames = np.random.default_rng(4).integers(0, 256, (2, 56, 56, 3), np.uint8)
    prefill = jax.jit(lambda t, f, v: pretrained.prefill(ours, weights, config, t, f, v,
                                                         width + follow.shape[1]))
    decode = jax.jit(lambda token, cache: pretrained.decode(ours, token, cache))
    first, cache = prefill(jnp.asarray(ids), jnp.asarray(frames), jnp.asarray(valid))
    stepped = [np.asarray(first)]
    for t in range(follow.shape[1] - 1):
        step_logits, cache = decode(jnp.asarray(follow[:, t]), cache)
        stepped.append(np.asarray(step_logits))
    for b, seq in enumerate(prompts):  # each row alone, no padding, one full forward
        row = np.array([seq + list(follow[b])])
        full = np.asarray(pretrained.logits(ours, weights, config, jnp.asarray(row),
                                            jnp.asarray(frames[b:b + 1]),
                                            jnp.ones(row.shape, bool)))[0]
        want = full[len(seq) - 1:len(seq) - 1 + follow.shape[1]]
        # the same float32 sums in another order: within 1e-4 (2.3e-5 seen on an Intel Xeon)
        np.testing.assert_allclose(np.stack([s[b] for s in stepped]), want, atol=1e-4, rtol=0)


def test_greedy_decoding_equals_transformers_generate(folder):
    """32 greedy tokens on a rendered board in the chat template, token for token the same as
    transformers' own `generate` (its cache, its M-RoPE bookkeeping)."""
    import jax

    import jaxgym
    import render

    variant, tied, model, out = folder
    config, ours, weights, tokenizer = pretrained.load(out)
    env = jaxgym.make("swap", preset="easy", tile_px=35)
    frame = np.asarray(render.frame(env, env.reset(jax.random.key(1))))
    ids = pretrained.prompt_ids(tokenizer, config, env.instructions(),
                                pretrained.image_token_count(config, frame.shape))
    got = pretrained.greedy(ours, weights, config, ids, frame, 32)
    processed = transformers.Qwen2VLImageProcessorPil()(images=[frame], return_tensors="pt")
    row = torch.tensor([ids])
    with torch.no_grad():
        theirs = model.generate(input_ids=row, attention_mask=torch.ones_like(row),
                                pixel_values=processed["pixel_values"],
                                image_grid_thw=processed["image_grid_thw"],
                                mm_token_type_ids=(row == TOKENS["image_token_id"]).long(),
                                max_new_tokens=32, min_new_tokens=32, do_sample=False)
    assert got == theirs[0, len(ids):].tolist()

"""A downloaded checkpoint as the policy (policy.pretrained_model) on a tiny random Qwen2.5-VL
written by transformers: the sampler's interface equals the checkpoint's own forward and greedy
decoding, its responses are scored on the host like the project tokenizer's on the device, and
policy.sft / policy.train / policy.evaluate run from it. Needs the `hf` extra."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("torch", reason="the hf extra (torch) is not installed")
pytest.importorskip("transformers", reason="the hf extra is not installed")

import jaxgym  # noqa: E402
from bench import train as bench_train  # noqa: E402
from flax import nnx  # noqa: E402
from hf_checkpoints import hf_model, save_tokenizer  # noqa: E402
from jaxgym import text as game_text  # noqa: E402
from policy import (checkpoint, config, episodes, evaluate, pretrained, pretrained_model,  # noqa: E402
                    sample, sft, train, tokenizer as tokenization)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("qwen2.5-vl"))
    hf_model("qwen2.5-vl", tied=False).save_pretrained(out)
    save_tokenizer(out)
    return out


@pytest.fixture(scope="module")
def policy(folder):
    return pretrained_model.load_policy(folder)


def swap_games(folder, image_first):
    games = episodes.GameSet.make("swap", "easy", "full", image_first)
    return pretrained_model.fit(games, folder)


def test_the_sampler_interface_equals_the_checkpoints_forward_and_greedy_decoding(
        folder, policy):
    graphdef, params, tokenizer, model_cfg = policy
    config, decoder, weights, _ = pretrained.load(folder)
    model = nnx.merge(graphdef, params)
    # the image first, as checkpoint runs prompt (sft.PRETRAINED): the shared prefix is the
    # chat template up to the image, and the board's M-RoPE positions follow it
    games = swap_games(folder, True)
    states = games.deal(jax.random.key(0), 2)
    frames = games.draw(states)
    prompt = games.prompt(tokenizer, model_cfg, 2)
    ids = tokenizer.prompt_ids(game_text.prompt(games.envs[0], "full"),
                               model_cfg.num_image_tokens(frames.shape[1:]), True)
    assert ids == list(np.asarray(prompt.prefix[0])) + list(np.asarray(prompt.tokens[0]))
    whole = pretrained.logits(decoder, weights, config, jnp.asarray([ids] * 2), frames,
                              jnp.ones((2, len(ids)), bool))
    prefix = model.encode_prefix(prompt.prefix, prompt.prefix_valid)
    ours = model(prompt.tokens, frames, prompt.valid, prefix, prompt.group)
    # the shared instructions computed once, then each board's part: the same logits
    np.testing.assert_allclose(ours, whole[:, -ours.shape[1]:], atol=1e-4)
    # the cached sampler, greedy, against the checkpoint's own greedy decoding
    samples = sample.generate(graphdef, params, prompt, frames, jax.random.key(1), 0.0,
                              max_new_tokens=12, eos_id=-1, pad_id=tokenizer.pad_id)
    greedy, _ = pretrained.greedy_batch(decoder, weights, config, ids, frames, 12)
    assert np.asarray(samples.tokens).tolist() == greedy
    scored = sample.score(graphdef, params, prompt, frames, samples.tokens)
    np.testing.assert_allclose(scored, samples.logprobs, atol=1e-4)


def test_bfloat16_parameters_give_nearly_the_float32_logits(folder, policy):
    graphdef, params, tokenizer, model_cfg = policy
    half_graphdef, half, _, _ = pretrained_model.load_policy(folder, "bfloat16")
    assert {x.dtype for x in jax.tree.leaves(half)} == {jnp.dtype(jnp.bfloat16)}
    games = swap_games(folder, True)
    states = games.deal(jax.random.key(2), 2)
    frames = games.draw(states)
    prompt = games.prompt(tokenizer, model_cfg, 2)
    response = jnp.asarray(tokenizer.encode("<perception>") * 2).reshape(2, -1)
    full = sample.score(graphdef, params, prompt, frames, response)
    rounded = sample.score(half_graphdef, half, prompt, frames, response)
    assert np.all(np.isfinite(rounded))
    assert float(jnp.abs(full - rounded).max()) < 0.25 * float(jnp.abs(full).max())


def test_its_responses_score_on_the_host_as_the_project_tokenizer_on_the_device(folder, policy):
    tokenizer = policy[2]
    games = swap_games(folder, True)
    states = games.deal(jax.random.key(3), 8, 3)
    texts = games.cold_start_texts(states)[:4] + games.base_texts(jax.random.key(4), 8)[:3]
    texts.append(texts[0].replace("</think>", ""))  # malformed
    project = tokenization.default()
    ours, mask = episodes.pad_responses(project, texts, 256)
    theirs, their_mask = episodes.pad_responses(tokenizer, texts, 512)
    assert [tokenizer.decode_response(r, m) for r, m in zip(theirs, their_mask)] == texts
    device = games.score(project, states, jnp.asarray(ours), jnp.asarray(mask), jit=True)
    host = games.score(tokenizer, states, jnp.asarray(theirs), jnp.asarray(their_mask))
    for name in device._fields:
        np.testing.assert_array_equal(getattr(host, name), getattr(device, name), err_msg=name)
    assert np.asarray(device.perception)[:4].all() and not np.asarray(device.format)[-1]


def test_cold_start_rl_and_evaluation_run_from_a_checkpoint(folder, tmp_path):
    cfg = config.build(sft.SFTConfig, **{**sft.PRETRAINED, "lr": 1e-3}, model=folder, steps=2,
                       batch=2, eval_every=2, eval_boards=2, save_every=2)
    init = str(tmp_path / "init")
    sft.train(cfg, init, quiet=True)
    saved = checkpoint.load_settings(init)
    assert saved["pretrained"] == folder and saved["image_first"]
    graphdef, params, tokenizer, _, _ = checkpoint.load_policy(init)
    assert isinstance(tokenizer, pretrained_model.ChatTokenizer)
    start = pretrained_model.load_policy(folder)[1]
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, start)
    assert max(jax.tree.leaves(moved)) > 0  # the cold start trained the checkpoint's weights

    run = str(tmp_path / "g1")
    rl = dataclasses.replace(train.TrainConfig(), model=folder, steps=1, batch=2, samples=2,
                             eval_boards=0, save_every=1)
    train.train(rl, run, init=init, quiet=True, gif_boards=0)
    logged = [json.loads(line) for line in open(os.path.join(run, train.LOG))]
    assert len(logged) == 1 and np.isfinite(logged[0]["loss"])
    assert 0 <= logged[0]["format_reward"] <= 1  # scored on the host

    out = str(tmp_path / "eval.json")
    assert evaluate.main(["--game", "swap", "--checkpoint", run, "--boards", "2",
                          "--json", out]) == 0
    assert json.load(open(out))["boards"] == 2


def test_g0_runs_rl_from_the_checkpoint_itself(folder, tmp_path):
    rl = dataclasses.replace(train.TrainConfig(), model=folder, mode="g0", steps=1, batch=2,
                             samples=2, eval_boards=0, save_every=1)
    train.train(rl, str(tmp_path), quiet=True, gif_boards=0)
    assert checkpoint.load_settings(str(tmp_path))["init"] == folder
    assert not os.path.exists(tmp_path / "init")  # no cold start, no format-only base
    # the step the benchmark times is that run's (and shares its compilation)
    result = bench_train.run("swap", "easy", "tiny", 2, 2, 1, 0, model=folder)
    assert result["size"] == folder and result["boards_per_s"] > 0


def test_clear_errors_for_a_checkpoint_run(folder):
    with pytest.raises(ValueError, match="tag tokens"):
        sft.SFTConfig(model=folder, think_batch=8, restate_board=True)
    with pytest.raises(ValueError, match="one game"):
        sft.SFTConfig(model=folder, game="mix")
    with pytest.raises(ValueError, match="neither"):
        sft.SFTConfig(model="no/such/folder")
    with pytest.raises(ValueError, match="no folder"):
        train.TrainConfig(model="no/such/folder")
    assert jaxgym.make("swap")  # the engine is untouched

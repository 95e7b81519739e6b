"""The cold start: a few steps lower the loss; checkpoints round-trip exactly and resume; a
damaged checkpoint is a clear error; evaluate's baselines and CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import jaxgym
from bench import coupling
from policy import checkpoint, config, episodes, evaluate, evaluation, loop, model as vlm, sft
from policy import tokenizer as tokenization
from policy.config import build

SMALL = dict(vocab_size=tokenization.default().vocab_size, width=32, depth=1, heads=2,
             kv_heads=1, mlp_width=64, vision_width=16, vision_depth=1, vision_heads=1,
             vision_mlp=32, learned_positions=256)
CFG = build(sft.SFTConfig, steps=6, batch=4, lr=1e-2, warmup_steps=0, eval_every=6, eval_boards=4, save_every=3,
                    model_overrides=SMALL, max_random_moves=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sft"))
    sft.train(CFG, out, quiet=True)
    return out


def test_training_lowers_the_loss(run_dir):
    lines = [json.loads(x) for x in open(os.path.join(run_dir, "sft_metrics.jsonl"))]
    steps = [line for line in lines if line["kind"] == "train"]
    assert [line["step"] for line in steps] == list(range(1, CFG.steps + 1))
    first = initial_loss()
    assert steps[-1]["loss"] < 0.7 * first
    (held_out,) = [line for line in lines if line["kind"] == "eval"]  # eval_every = steps
    assert held_out["step"] == CFG.steps
    for name in evaluation.METRICS:
        assert 0.0 <= held_out[name] <= 1.0 or name == "mean_game_reward"


def test_decision_weights_weigh_think_and_answer():
    tok = tokenization.default()
    text = jaxgym.text.response_text("Red circle", "Swap.", "(0, 0) (0, 1)")
    ids, mask = episodes.pad_responses(tok, [text], 32)
    weights = sft.decision_weights(tok, ids, mask, 5.0)[0]
    think = ids[0].tolist().index(tok.tag_ids["<think>"])
    assert (weights[:think] == 1).all() and (weights[think:mask.sum()] == 5).all()
    assert (weights[mask.sum():] == 0).all()


def test_move_weights_weigh_the_move_where_the_think_first_names_it():
    tok = tokenization.default()
    texts = [jaxgym.text.response_text("Red circle", "Board: AB AC Swap (0, 1) with (2, 3).",
                                       "(0, 1) (2, 3)"),
             jaxgym.text.response_text("2|4", "Slide up.", "0")]  # 2048: the answer's digit
    ids, _ = episodes.pad_responses(tok, texts, 48)
    weights = sft.move_weights(tok, ids, 20.0)
    assert [tok.decode([i]).strip() for i in ids[0][weights[0] == 20]] == ["0", "1", "2", "3"]
    assert [tok.decode([i]) for i in ids[1][weights[1] == 20]] == ["0"]
    assert set(weights.ravel().tolist()) == {1.0, 20.0}


def test_think_rows_hold_the_think_through_the_move_at_its_positions():
    tok = tokenization.default()
    env = jaxgym.make("swap", "easy")
    games = episodes.GameSet((env,), "brief", restate_board=True)
    cfg = build(sft.SFTConfig, restate_board=True, think_batch=3, move_weight=20.0)
    states = episodes.deal(env, jax.random.key(3), 3, 1)
    response, weights = sft.targets(cfg, games, tok, (states,), None, 128)
    model_cfg = vlm.config("tiny", **SMALL)
    prompt = games.prompt(tok, model_cfg, 3)
    offsets = sft.response_offsets(prompt)
    prompt_text = jaxgym.text.prompt(env, "brief")
    assert (offsets == len(tok.prompt_ids(prompt_text, model_cfg.num_image_tokens(
        episodes.draw(env, states).shape[1:])))).all()
    rows = sft.think_rows(tok, response, weights, offsets)
    for i in range(3):
        text = tok.decode(rows.tokens[i][rows.valid[i]])
        board = episodes.restated_board(np.asarray(states.board[i]))
        move = jaxgym.text.answer_text(env, int(env.expert_action(
            jax.tree.map(lambda x: x[i], states)))).replace(") (", ") with (")
        assert text == f"<think>{board} Swap {move[:-1]}"
        start = response[i].tolist().index(tok.tag_ids["<think>"])
        n = int(rows.valid[i].sum())
        assert (rows.positions[i, :n] == offsets[i] + start + np.arange(n)).all()
        scored = rows.weights[i] > 0
        assert tok.decode(rows.tokens[i][scored]).startswith(" Swap (")
        assert (rows.weights[i][scored] == weights[i, start:start + n][scored[:n]]).all()
        assert sorted(set(rows.weights[i][scored].tolist())) == [1.0, 20.0]


def test_think_rows_from_perception_give_the_block_and_train_the_board_copied_from_it():
    tok = tokenization.default()
    env = jaxgym.make("swap", "easy")
    games = episodes.GameSet((env,), "brief", restate_board=True)
    cfg = build(sft.SFTConfig, restate_board=True, think_batch=3, move_weight=20.0,
                think_from="perception")
    states = episodes.deal(env, jax.random.key(4), 3, 1)
    response, weights = sft.targets(cfg, games, tok, (states,), None, 128)
    offsets = np.array([40, 41, 42], np.int32)
    rows = sft.think_rows(tok, response, weights, offsets, "perception")
    for i in range(3):
        board = np.asarray(states.board[i])
        text = tok.decode(rows.tokens[i][rows.valid[i]])
        assert text.startswith(f"<perception>{jaxgym.text.describe_board(env, board)}"
                               f"</perception><think>{episodes.restated_board(board)} Swap (")
        start = response[i].tolist().index(tok.tag_ids["<perception>"])
        n = int(rows.valid[i].sum())
        assert (rows.positions[i, :n] == offsets[i] + start + np.arange(n)).all()
        scored = rows.weights[i] > 0
        # the block is given, everything after it is trained: the board restated from it first
        assert tok.decode(rows.tokens[i][scored]).startswith(
            f"<think>{episodes.restated_board(board)} Swap (")
        assert not scored[:list(rows.tokens[i]).index(tok.tag_ids["</perception>"]) + 1].any()
        assert sorted(set(rows.weights[i][scored].tolist())) == [1.0, 20.0]
    with pytest.raises(ValueError, match="think_from"):
        build(sft.SFTConfig, think_from="image")


def test_text_logits_equal_the_full_forward_on_text():
    tok = tokenization.default()
    model = vlm.create(vlm.config("tiny", **SMALL), tok.image_pad_id, 0)
    tokens = np.asarray([tok.encode("<think>Board: AB AC Swap (0, 1)")], np.int32)
    positions = np.arange(tokens.shape[1], dtype=np.int32)[None]
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    np.testing.assert_allclose(model.text_logits(tokens, positions, tokens > -1),
                               model(tokens, frames), atol=1e-5)


def initial_loss():
    env = jaxgym.make(CFG.game, CFG.board_preset)
    tok = tokenization.default()
    cfg = vlm.config("tiny", **SMALL)
    graphdef, params = nnx.split(vlm.create(cfg, tok.image_pad_id, CFG.seed))
    states = episodes.deal(env, jax.random.fold_in(jax.random.key(CFG.seed), 0), CFG.batch, 1)
    budget = episodes.response_budget(env, tok)
    response, mask = sft.targets(CFG, episodes.GameSet((env,)), tok, (states,), None, budget)
    prompt = episodes.prompt_batch(env, tok, cfg, CFG.batch)
    loss = jax.jit(lambda p, *batch: sft.response_loss(nnx.merge(graphdef, p), *batch))
    return float(loss(params, prompt, episodes.draw(env, states), response, mask))


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT_RUN = """
import dataclasses, json, sys
import jax
from policy import config, sft
split = []  # at each checkpoint: the share of parameter arrays cut over the "fsdp" axis
real_save = sft.checkpoint.save
def save(folder, step, tree, *args):
    leaves = jax.tree.leaves(tree["params"])
    split.append(sum("fsdp" in str(x.sharding.spec) for x in leaves) / len(leaves))
    return real_save(folder, step, tree, *args)
sft.checkpoint.save = save
cfg = config.build(sft.SFTConfig, **json.loads(sys.argv[1]))
try:
    sft.train(dataclasses.replace(cfg, batch=6), sys.argv[2], quiet=True)
except ValueError as error:
    assert "batch 6 must be a multiple of the 4 devices" in str(error), error
else:
    raise SystemExit("batch 6 was accepted on 4 devices")
sft.train(cfg, sys.argv[2], quiet=True)
assert len(split) == cfg.steps // cfg.save_every and min(split) > 0.5, split
"""


def test_one_device_equals_four_simulated_devices_with_split_parameters(run_dir, tmp_path):
    # 4 devices: 2 copies of the parameters and Adam's moments, each split in 2 (FSDP), the
    # boards split over all 4, layers rematerialised; the held-out evaluation runs there too
    options = dict(config.flatten(CFG), fsdp=2, remat=True)
    out = str(tmp_path / "d4")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                         "--xla_force_host_platform_device_count=4")
    subprocess.run([sys.executable, "-c", SPLIT_RUN, json.dumps(options), out], check=True,
                   env=env, cwd=ROOT, timeout=600)
    one, four = (loop.read_metrics(d, sft.LOG) for d in (run_dir, out))
    assert [line["kind"] for line in one] == [line["kind"] for line in four]
    losses = [[line["loss"] for line in run if line["kind"] == "train"] for run in (one, four)]
    # the first step (the same parameters) agrees to rounding; gradients summed in another
    # order then round differently, and Adam turns that into small differences
    np.testing.assert_allclose(losses[1][0], losses[0][0], rtol=1e-5)
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-2)
    held_out = [line for run in (one, four) for line in run if line["kind"] == "eval"]
    assert held_out[0].keys() == held_out[1].keys()


def test_checkpoint_round_trip_is_exact(run_dir, tmp_path):
    graphdef, params, tok, model_cfg, settings = checkpoint.load_policy(run_dir)
    assert settings["sft"]["steps"] == CFG.steps and model_cfg.width == SMALL["width"]
    # the prompt layout travels with the policy, so evaluation and RL show it the same prompt
    assert (settings["prompt_style"], settings["image_first"]) == ("full", False)
    tree = {"params": params, "extra": {"marker": np.arange(3)}}
    checkpoint.save(str(tmp_path), 7, tree, settings, tok)
    back = checkpoint.restore(str(tmp_path), 7, tree)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert checkpoint.latest_step(str(tmp_path)) == 7
    assert checkpoint.load_tokenizer(str(tmp_path)).encode("Red circle") == tok.encode("Red circle")


def test_resume_equals_an_uninterrupted_run(run_dir, tmp_path):
    out = str(tmp_path / "resumed")
    sft.train(CFG, out, quiet=True, stop_after=3)  # as if interrupted after step 3
    assert checkpoint.latest_step(out) == 3
    sft.train(CFG, out, resume=True, quiet=True)
    _, resumed, *_ = checkpoint.load_policy(out)
    _, straight, *_ = checkpoint.load_policy(run_dir)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_damaged_checkpoints_are_clear_errors(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        checkpoint.load_policy(str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        checkpoint.load_policy(str(broken))
    settings = checkpoint.load_settings(run_dir)
    (broken / "config.json").write_text(json.dumps(settings))
    tokenization.default().save(broken / "tokenizer")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        checkpoint.load_policy(str(broken))
    step_dir = broken / "3"
    step_dir.mkdir()
    (step_dir / "garbage").write_text("x")
    with pytest.raises((ValueError, FileNotFoundError)):
        checkpoint.load_policy(str(broken))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="variant"):
        sft.SFTConfig(variant="warm")
    with pytest.raises(ValueError, match="warmup"):
        build(sft.SFTConfig, warmup_steps=-1)
    with pytest.raises(ValueError, match="restate_board"):
        build(sft.SFTConfig, think_batch=8)


def test_evaluate_baselines():
    games = episodes.GameSet.make("swap", "easy")
    tok = tokenization.default()
    expert, _ = evaluation.evaluate(games, evaluation.TextPolicy("expert", tok), boards=8,
                                    steps=2, progress=False)
    assert expert == dict(valid_move_rate=1.0, hit_rate=1.0,
                          mean_game_reward=expert["mean_game_reward"],
                          perception_exact=1.0, perception_share=1.0, format_rate=1.0)
    assert expert["mean_game_reward"] >= 6
    random, _ = evaluation.evaluate(games, evaluation.TextPolicy("random", tok), boards=8,
                                    steps=2, progress=False)
    assert random["perception_exact"] == 0.0 and random["format_rate"] == 1.0
    assert random["perception_share"] == 0.0  # its block is empty
    assert random["valid_move_rate"] < 1.0
    with pytest.raises(ValueError, match="'expert' or 'random'"):
        evaluation.TextPolicy("greedy", tok)


def test_a_mix_is_evaluated_per_game_and_overall():
    games = episodes.GameSet((jaxgym.make("swap", "easy"), jaxgym.make("2048", "easy")))
    tok = tokenization.default()
    random, _ = evaluation.evaluate(games, evaluation.TextPolicy("random", tok), boards=8,
                                    steps=2, progress=False)
    for name in evaluation.METRICS:
        per_game = [random[f"{label}/{name}"] for label in ("swap", "2048")]
        assert random[name] == pytest.approx(np.mean(per_game))  # 4 boards of each
    assert random["swap/perception_exact"] == 0.0 and random["2048/format_rate"] == 1.0


def test_evaluate_cli_writes_json_and_gif(run_dir, tmp_path):
    out_json, gif = tmp_path / "m.json", tmp_path / "play.gif"
    code = evaluate.main(["--game", "swap", "--checkpoint", run_dir, "--boards", "4", "--steps",
                          "2", "--json", str(out_json), "--gif", str(gif), "--gif-boards", "2"])
    assert code == 0
    metrics = json.loads(out_json.read_text())
    for name in evaluation.METRICS:
        assert name in metrics
    for name in ("valid_move_rate", "perception_exact", "format_rate"):
        assert 0.0 <= metrics[name] <= 1.0
    import imageio.v3 as iio

    assert iio.imread(gif).shape[0] == 4  # 2 boards x 2 steps
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing")]) == 2


def test_every_setting_has_one_flag_and_presets_are_settings():
    import argparse

    from policy import config, train

    for cls, presets in ((sft.SFTConfig, sft.RUN_PRESETS), (train.TrainConfig, train.RUN_PRESETS)):
        parser = argparse.ArgumentParser()
        config.add_flags(parser, cls)
        flags = {a.dest for a in parser._actions}
        assert set(config.leaves(cls)) - {"model_overrides"} <= flags
        for preset in presets.values():  # every preset names real settings and builds
            assert config.flatten(config.build(cls, **preset)).items() >= preset.items()
    cfg = config.build(train.TrainConfig, lr=3e-5, kl_coef=0.0, updates=2)
    assert (cfg.grpo.optim.lr, cfg.grpo.kl_coef, cfg.grpo.updates) == (3e-5, 0.0, 2)
    assert cfg.grpo.optim.max_grad_norm == train.TrainConfig().grpo.optim.max_grad_norm
    with pytest.raises(ValueError, match="has no setting"):
        config.build(train.TrainConfig, learning_rate=1.0)
    cfg, _ = train.parse_args(["--preset", "cpu", "--lr", "2e-5", "--rewards", "format"])
    assert cfg.grpo.optim.lr == 2e-5 and cfg.rewards == ("format",) and cfg.steps == 60
    # G1's cold start is the sft preset's training; G0's base has no move to train
    g1 = train.init_config(config.build(train.TrainConfig, mode="g1"))
    preset = config.build(sft.SFTConfig, **sft.RUN_PRESETS["cpu"])
    assert dataclasses.replace(g1, save_every=preset.save_every) == preset
    g0 = train.init_config(config.build(train.TrainConfig, mode="g0"))
    assert (g0.variant, g0.think_batch, g0.steps) == ("base", 0, preset.steps // 5)
    short = train.init_config(config.build(train.TrainConfig, init_steps=200,
                                           init_schedule="constant"))
    assert (short.steps, short.optim.schedule, short.optim.lr) == (200, "constant", preset.optim.lr)
    few = train.init_config(config.build(train.TrainConfig, init_batch=4))
    assert (few.batch, few.think_batch) == (4, preset.think_batch)
    split = train.init_config(config.build(train.TrainConfig, fsdp=2, remat=True))
    assert (split.fsdp, split.remat) == (2, True)
    with pytest.raises(ValueError, match="init_schedule must be"):
        config.build(train.TrainConfig, init_schedule="linear")
    with pytest.raises(ValueError, match="init_batch must be"):
        config.build(train.TrainConfig, init_batch=-1)


def test_runs_with_the_same_optimiser_share_one_compiled_step():
    graphdef, _ = nnx.split(vlm.create(vlm.config("tiny", **SMALL), 5))
    step = sft.compiled_train_step
    same = build(sft.SFTConfig, lr=1e-3)
    assert step(graphdef, CFG.optim, 6) is step(graphdef, build(sft.SFTConfig, lr=1e-2,
                                                               warmup_steps=0).optim, 6)
    assert step(graphdef, same.optim, 6) is not step(graphdef, CFG.optim, 6)
    # every optimiser field is part of the key, also one the old hand-made key left out
    clipped = build(sft.SFTConfig, lr=1e-2, warmup_steps=0, max_grad_norm=0.5)
    assert step(graphdef, clipped.optim, 6) is not step(graphdef, CFG.optim, 6)
    assert step(graphdef, CFG.optim, 7) is not step(graphdef, CFG.optim, 6)


def test_bench_coupling_reads_a_checkpoint(run_dir, tmp_path):
    out = tmp_path / "coupling.json"
    report = coupling.main([run_dir, "--boards", "4", "--json", str(out)])
    saved = json.loads(out.read_text())  # NaN where a group is empty: compare its numbers' keys
    assert set(saved) == set(report) and saved["valid_move_rate"] == report["valid_move_rate"]
    assert report["game"] == "swap" and report["boards"] == 4
    assert 0 <= report["perception_cells"] <= 1 and 0 <= report["valid_move_rate"] <= 1

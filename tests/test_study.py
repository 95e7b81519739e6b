"""The study's report: study.json with the keys the issue names for g0, g1, expert and random,
the Markdown table and the plot (the two RL runs replaced by stand-ins; test_train covers them)."""

import json
import os

import pytest

from policy import loop, study, train


def test_study_writes_json_table_and_plot(tmp_path, monkeypatch):
    made = []

    def run_mode(cfg, folder, boards):
        init = train.init_config(cfg)
        made.append((cfg.mode, cfg.steps, boards, init.steps, init.batch, cfg.rewards,
                     init.optim.schedule, cfg.temperature, init.think_from))
        before = dict(valid_move_rate=0.25, mean_game_reward=2.0, perception_exact=0.5,
                      perception_share=0.75)
        return dict(before=before, after={k: v + 0.1 for k, v in before.items()})

    def read_metrics(folder, name="train_metrics.jsonl"):
        return [dict(kind="train", step=s, reward=0.1 * s, valid=0.2, perception=0.5)
                for s in (1, 2, 3)]

    monkeypatch.setattr(study, "run_mode", run_mode)
    monkeypatch.setattr(loop, "read_metrics", read_metrics)
    out = str(tmp_path / "study")
    assert study.main(["--out", out, "--boards", "8", "--steps", "3", "--init-steps", "7",
                       "--init-schedule", "constant", "--init-batch", "4",
                       "--init-think-from", "perception", "--temperature", "0.7",
                       "--rewards", "perception_share,format"]) == 0
    assert [m[0] for m in made] == ["g0", "g1"]
    assert all(m[1:] == (3, 8, 7, 4, ("perception_share", "format"), "constant", 0.7,
                         "perception") for m in made)
    results = json.load(open(os.path.join(out, "study.json")))["results"]
    assert set(results) == {"g0", "g1", "expert", "random"}
    for name, r in results.items():
        for when in ("before", "after"):
            assert set(r[when]) == set(study.KEYS), (name, when)
    # the fixed policies are measured, not made up: the expert always moves validly
    assert results["expert"]["after"]["valid_move_rate"] == 1.0
    assert results["expert"]["after"]["perception_exact"] == 1.0
    assert 0.0 <= results["random"]["after"]["valid_move_rate"] < 1.0
    table = open(os.path.join(out, "study.md")).read()
    assert "| g1 | 0.250 -> 0.350" in table
    assert os.path.getsize(os.path.join(out, "study.png")) > 0


def test_study_rejects_an_unknown_game():
    with pytest.raises(SystemExit):
        study.main(["--out", "x", "--game", "chess"])


def test_an_unknown_think_start_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--init-think-from", "image"])
    with pytest.raises(ValueError, match="init_think_from"):
        train.TrainConfig(init_think_from="image")


def test_unknown_rewards_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="rewards must be"):
        study.main(["--out", str(tmp_path), "--rewards", "speed"])

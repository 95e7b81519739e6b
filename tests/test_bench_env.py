"""bench.env on a tiny batch: every figure the README quotes is measured and reported."""

import json

import pytest

from bench import env as bench_env


def test_env_bench_reports_rates_compile_times_and_the_ceiling(tmp_path, capsys):
    out = tmp_path / "env.json"
    bench_env.main(["--game", "2048", "--preset", "easy", "--batch", "4", "--steps", "1",
                    "--repeats", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["repeats"] == 2
    result = report["2048"]
    assert result["rules"]["board_steps_per_s"] > 0 and result["rules"]["compile_s"] > 0
    assert result["render"]["frames_per_s"] > 0 and result["render"]["compile_s"] > 0
    assert result["ceiling"]["frames_per_s"] > 0
    # render and ceiling timed in turn: the efficiency is the median of the pairs' ratios
    runs = result["render_efficiency_runs"]
    assert len(runs) == 2 and min(runs) > 0
    assert result["render_efficiency"] == pytest.approx(sum(runs) / 2)
    assert "render efficiency" in capsys.readouterr().out

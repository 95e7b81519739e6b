"""bench.rewards on a tiny batch: both scoring paths are timed, on responses they both score as
the expert's valid moves."""

import json

from bench import rewards as bench_rewards


def test_reward_bench_times_the_device_and_the_host_path(tmp_path, capsys):
    out = tmp_path / "rewards.json"
    bench_rewards.main(["--batch", "8", "--think-chars", "300", "--vocab-size", "400",
                        "--repeats", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    device, host = report["device"], report["host"]
    assert device["seconds"] > 0 and host["seconds"] > 0 and host["decode_s"] > 0
    assert device["valid"] == host["valid"] == 1.0  # the expert's moves, scored alike
    assert device["tokens"] > 100 and host["tokens"] > 100  # the lengthened thinks
    assert "host (byte-level BPE" in capsys.readouterr().out

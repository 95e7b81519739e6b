"""The newcomer's first command."""

import imageio.v3 as iio
import pytest

from jaxgym import play


def test_play_writes_an_animation_and_prints_the_score(tmp_path, capsys):
    out = tmp_path / "swap.gif"
    assert play.main(["--game", "swap", "--preset", "easy", "--policy", "expert", "--steps", "3", "--out", str(out)]) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 4  # one per move, then the final board
    printed = capsys.readouterr().out
    assert "score" in printed and "wrote" in printed


def test_play_random_policy_and_bad_settings(capsys):
    assert play.main(["--policy", "random", "--steps", "2", "--preset", "easy"]) == 0
    assert play.main(["--preset", "easy", "--tile-px", "3"]) == 2
    assert "tile_px" in capsys.readouterr().err


@pytest.mark.parametrize("game", ["shisensho", "shisensho-images", "2048"])
def test_every_game_plays_and_draws_a_picture(game, tmp_path, capsys):
    gif, png = tmp_path / "game.gif", tmp_path / "board.png"
    assert play.main(["--game", game, "--preset", "easy", "--steps", "2", "--tile-px", "16", "--out", str(gif)]) == 0
    assert iio.imread(gif, index=None).shape[0] >= 2
    assert play.main(["--game", game, "--preset", "easy", "--steps", "1", "--out", str(png)]) == 0
    picture = iio.imread(png)
    assert picture.ndim == 3 and picture.shape[-1] == 3
    assert "score" in capsys.readouterr().out

"""GameSet: one game exactly as before; a mix splits batches evenly, keeps each game's prompt
and rewards, and draws every board on one canvas."""

import jax
import numpy as np
import pytest

import jaxgym
import render
from policy import episodes, model as vlm, tokenizer as tokenization

TOK = tokenization.default()
CFG = vlm.config("tiny", vocab_size=TOK.vocab_size)
MIX = episodes.GameSet.make("mix", "easy")


def test_one_game_is_the_single_game_functions():
    env = jaxgym.make("swap", "easy")
    games = episodes.GameSet.make("swap", "easy")
    (states,) = games.deal(jax.random.key(3), 8, 2)
    expected = episodes.deal(env, jax.random.key(3), 8, 2)
    np.testing.assert_array_equal(states.board, expected.board)
    np.testing.assert_array_equal(games.draw((states,)), episodes.draw(env, states))
    prompt = games.prompt(TOK, CFG, 8)
    full = np.concatenate([np.asarray(prompt.prefix)[prompt.group], prompt.tokens], axis=1)
    assert (full == np.asarray(episodes.prompt_ids(env, TOK, CFG))).all()


def test_a_mix_splits_the_batch_evenly_over_every_game():
    assert [env.name for env in MIX.envs] == sorted(jaxgym.list_games())
    assert MIX.counts(8) == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="does not split evenly over the 4 games"):
        MIX.counts(6)


def test_each_board_of_a_mix_gets_its_own_games_prompt():
    prompt = MIX.prompt(TOK, CFG, 8)
    n_image = CFG.num_image_tokens(MIX.frame_shape())
    for i, g in enumerate(np.asarray(prompt.group)):
        ids = np.asarray(prompt.prefix[g])[np.asarray(prompt.prefix_valid[g])].tolist()
        expected = TOK.prompt_ids(jaxgym.text.prompt(MIX.envs[g]), n_image)
        assert ids + np.asarray(prompt.tokens[i]).tolist() == expected
    assert np.asarray(prompt.group).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_image_first_prompts_are_left_padded_per_game():
    mix = episodes.GameSet(MIX.envs, "brief", image_first=True)
    prompt = mix.prompt(TOK, CFG, 8)
    n_image = CFG.num_image_tokens(mix.frame_shape())
    for i, g in enumerate(np.asarray(prompt.group)):
        own = np.asarray(prompt.tokens[i])[np.asarray(prompt.valid[i])].tolist()
        expected = TOK.prompt_ids(jaxgym.text.prompt(mix.envs[g], "brief"), n_image, True)
        assert np.asarray(prompt.prefix[g]).tolist() + own == expected
    assert not np.asarray(prompt.valid).all()  # the games' instructions differ in length


def test_a_mix_draws_on_one_canvas_and_scores_by_game():
    pair = episodes.GameSet((jaxgym.make("2048", "easy"), jaxgym.make("swap", "easy")))
    states = pair.deal(jax.random.key(0), 4)
    frames = pair.draw(states)
    assert frames.shape == (4,) + pair.frame_shape() == (4, 192, 192, 3)
    np.testing.assert_array_equal(frames, render.mix_frames(pair.multigame(4), states))
    texts = pair.cold_start_texts(states)  # the expert's responses: all right, all valid
    assert "Slide" in texts[0] and "Swap" in texts[2]
    ids, mask = episodes.pad_responses(TOK, texts, pair.response_budget(TOK))
    rewards = pair.score(TOK, states, ids, mask, jit=True)
    assert rewards.format.tolist() == [1.0] * 4 and rewards.perception.tolist() == [1.0] * 4
    assert rewards.valid.tolist() == [1.0] * 4
    repeated = pair.repeat(states, 3)
    assert [len(s.board) for s in repeated] == [6, 6]
    np.testing.assert_array_equal(repeated[1].board[3], states[1].board[1])


def test_a_restated_board_is_one_token_a_cell_and_keeps_the_rewards():
    env = jaxgym.make("swap", "easy")
    games = episodes.GameSet((env,), "brief", restate_board=True)
    states = games.deal(jax.random.key(1), 4)
    board = np.asarray(states[0].board[0])
    restated = episodes.restated_board(board)
    ids = TOK.encode(restated)
    assert len(ids) == 2 + board.size and TOK.decode(ids) == restated  # "Board", ":", one a cell
    assert TOK.unk_id not in ids
    assert restated.split()[1:3] == [tokenization.cell_code(board[0, 0]),
                                     tokenization.cell_code(board[0, 1])]
    texts = games.cold_start_texts(states)
    assert "<think>" + restated + " Swap " in texts[0]
    ids, mask = episodes.pad_responses(TOK, texts, games.response_budget(TOK))
    rewards = games.score(TOK, states, ids, mask, jit=True)
    assert rewards.format.tolist() == rewards.perception.tolist() == rewards.valid.tolist() == [1.0] * 4
    assert tokenization.cell_code(-1) == "AA" and tokenization.cell_code(26) == "BB"
    with pytest.raises(ValueError, match="no cell code"):
        tokenization.cell_code(10_000)

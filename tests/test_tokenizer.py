"""The policy's tokenizer: round trips over every game's texts, tags as single tokens, the
saved folder loads in transformers."""

import json

import jax
import numpy as np
import pytest

import jaxgym
from jaxgym import text
from policy import tokenizer as tokenization

TOK = tokenization.default()


def game_texts(game, preset):
    env = jaxgym.make(game, preset)
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(1), 3))
    boards = np.asarray(states.board)
    actions = np.flatnonzero(np.asarray(states.legal_action_mask[0]))[:3]
    texts = [text.prompt(env)]
    texts += [text.describe_board(env, b) for b in boards]
    texts += [text.answer_text(env, a) for a in range(min(env.num_actions, 12))]
    texts += [text.rationale(env, boards[0], a) for a in actions]
    texts.append(text.response_text(texts[1], texts[-1], text.answer_text(env, actions[0])))
    return texts


@pytest.mark.parametrize("game", sorted(jaxgym.list_games()))
@pytest.mark.parametrize("preset", ["easy", "hard"])
def test_round_trip_of_every_game_text(game, preset):
    for t in game_texts(game, preset):
        ids = TOK.encode(t)
        assert TOK.decode(ids) == t
        assert TOK.unk_id not in ids


def test_tags_and_markers_are_single_tokens():
    for tag in tokenization.SPECIAL_TOKENS:
        if tag == tokenization.UNK:  # encode refuses text that maps to <unk>
            assert TOK.tokenizer.encode(tag, add_special_tokens=False).ids == [TOK.unk_id]
            continue
        ids = TOK.encode(tag)
        assert len(ids) == 1 and TOK.decode(ids) == ("" if tag == tokenization.PAD else tag)
    ids = TOK.encode("<perception>Red circle</perception><think></think><answer>3</answer>")
    assert ids[0] == TOK.tag_ids["<perception>"] and ids[-1] == TOK.tag_ids["</answer>"]
    assert len(ids) == 2 + 2 + 2 + 2 + 1


def test_text_inside_tags_encodes_as_alone():
    """The perception's ids appear unchanged inside a response (tags split the text)."""
    env = jaxgym.make("swap", "easy")
    truth = text.perception(env, env.reset(jax.random.key(0)))
    inner = TOK.encode(text.response_text(truth, "", "(0, 0) (0, 1)"))[1:]
    assert inner[: len(TOK.encode(truth))] == TOK.encode(truth)


def test_pieces_carry_at_most_one_leading_space():
    assert tokenization.pieces("(1, 2) (1, 3)") == ["(", "1", ",", " 2", ")", " (", "1", ",", " 3", ")"]
    assert tokenization.pieces("Red circle |\nBlue") == ["Red", " circle", " |", "\n", "Blue"]


def test_unknown_text_is_a_clear_error():
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary.*zebra"):
        TOK.encode("Red zebra")
    with pytest.raises(ValueError, match="vocabulary"):
        TOK.encode("Red\tcircle")


def test_prompt_ids_layout():
    prefix, rest = TOK.prompt_parts("Red circle", 4)
    assert prefix == [TOK.im_start_id] + TOK.encode("Red circle")
    assert rest[0] == TOK.vision_start_id and rest[1:5] == [TOK.image_pad_id] * 4
    assert rest[5:] == [TOK.vision_end_id, TOK.eos_id, TOK.im_start_id]
    assert TOK.prompt_ids("Red circle", 4) == prefix + rest
    first, own = TOK.prompt_parts("Red circle", 4, image_first=True)  # the image, then text
    assert first == [TOK.im_start_id]
    assert own == rest[:6] + TOK.encode("Red circle") + rest[6:]
    assert TOK.prompt_ids("Red circle", 4, image_first=True) == first + own


def test_decode_response_stops_at_end_of_turn_and_drops_padding():
    ids = TOK.encode("<answer>3</answer>") + [TOK.eos_id] + TOK.encode("Red")
    assert TOK.decode_response(ids) == "<answer>3</answer>"
    mask = [True] * 3 + [False] * (len(ids) - 3)
    assert TOK.decode_response(ids, mask) == "<answer>3</answer>"
    assert TOK.decode([TOK.pad_id] + TOK.encode("Red")) == "Red"


def test_saved_folder_loads_in_transformers(tmp_path):
    from transformers import AutoTokenizer

    TOK.save(tmp_path)
    loaded = tokenization.GameTokenizer.load(tmp_path)
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    for t in game_texts("swap", "easy")[:6]:
        assert loaded.encode(t) == TOK.encode(t)
        assert hf(t, add_special_tokens=False)["input_ids"] == TOK.encode(t)
        assert hf.decode(TOK.encode(t)) == t
    assert hf.eos_token_id == TOK.eos_id and hf.pad_token_id == TOK.pad_id
    assert len(hf) == TOK.vocab_size
    # a reloaded tokenizer equals the original, so compiled functions keyed on it are shared
    assert loaded == TOK and hash(loaded) == hash(TOK)
    other = tokenization.GameTokenizer(tokenization.build(["Swap the tiles"]))
    assert other != TOK


def test_corrupt_tokenizer_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        tokenization.GameTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ValueError, match="cannot read the tokenizer"):
        tokenization.GameTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    with pytest.raises(ValueError):
        tokenization.GameTokenizer.load(tmp_path)


def test_vocabulary_is_padded_and_deterministic():
    assert TOK.vocab_size % tokenization.VOCAB_MULTIPLE == 0
    again = tokenization.build()
    assert again.get_vocab() == TOK.tokenizer.get_vocab()
    vocab = TOK.tokenizer.get_vocab()
    assert "<" not in vocab and ">" not in vocab and " <" not in vocab

"""The policy's tokenizer: a word-level `tokenizers` model over the games' language, saved as a
`tokenizer.json` folder that `transformers.AutoTokenizer.from_pretrained(folder)` loads.

Pieces. Text splits into words (`[A-Za-z]+`), single digits, single punctuation marks and
newlines; each word, digit or mark may carry one leading space (" circle", " 3", " |"). Every
piece is one token, so `"(1, 2) (1, 3)"` is `( 1 , " 2" ) " (" 1 , " 3" )`. The vocabulary holds
the pieces of every game's prompts, perception texts, rationales and answers.

Special tokens, one id each: the tags `<perception>`, `</perception>`, `<think>`, `</think>`,
`<answer>`, `</answer>`, the turn markers `<|im_start|>` / `<|im_end|>` (end of turn; sampling stops
on it), the image markers `<|vision_start|>`, `<|image_pad|>` (one per image token),
`<|vision_end|>`, and `<pad>`, `<unk>`.

Encoding. A text has one encoding (its pieces, in order). A sampled sequence may spell a text
another way ("there" "as" "on" vs "the" "reason"), so the device rewards (`policy.rewards`) never
compare ids: they compare the characters the ids stand for, and agree with the host's text
rewards on every sequence. "<" and ">" are no ordinary tokens, so only the tag tokens make tags.
"""

from __future__ import annotations

import functools
import json
import os
import re
import string
from typing import Iterable, Sequence

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

PAD, UNK = "<pad>", "<unk>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
TAGS = ("perception", "think", "answer")
TAG_TOKENS = tuple(t for tag in TAGS for t in (f"<{tag}>", f"</{tag}>"))
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END, VISION_START, IMAGE_PAD, VISION_END) + TAG_TOKENS

PIECE = r" ?[A-Za-z]+| ?[0-9]| ?[^A-Za-z0-9\s]|\n| "
"""One token's text: a word, a digit or a mark, with at most one leading space; a newline; a
space (before a tag, or a second space)."""

MARKS = "".join(c for c in string.punctuation if c not in "<>")
VOCAB_MULTIPLE = 64  # the embedding table is padded to a multiple of this (reserved tokens)

# Words a user's own prompt or rationale is likely to want, beyond what the games' texts hold.
EXTRA_WORDS = (
    "a an and are as at be by can do does for from has have if in is it its move moves no not of "
    "on one or so that the then there this to two up down left right row column cell cells tile "
    "tiles pair same match matches line lines up empty board score yes"
).split()


RESTATED_VALUES = 128  # board values -1 .. 126 have a cell code in the vocabulary


def cell_code(value: int) -> str:
    """A board value as one two-letter word (one token): -1 (empty) "AA", 0 "AB", ..., 25
    "BA". The cold start's think may restate the board in these (`episodes.restated_board`)."""
    k = int(value) + 1
    if not 0 <= k < 26 * 26:
        raise ValueError(f"no cell code for board value {value}")
    return string.ascii_uppercase[k // 26] + string.ascii_uppercase[k % 26]


# ---- vocabulary -----------------------------------------------------------------------------


def pieces(text: str) -> list[str]:
    """The token texts of `text` (no special tokens in it); text between pieces (a tab, say)
    comes back as its own piece, which the tokenizer maps to `<unk>`."""
    out, pos = [], 0
    for match in re.finditer(PIECE, text):
        if match.start() > pos:
            out.append(text[pos:match.start()])
        out.append(match.group())
        pos = match.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def game_corpus() -> list[str]:
    """Every text the games can show or expect: prompts and cell names of every game at every
    preset, every colour, shape and image-class name a setting may choose, numbers, and a
    rationale and answer of each action a game has (up to 4; no board is dealt)."""
    import jaxgym
    from jaxgym import images, text, tiles

    texts = [" ".join(name for name, _ in colours) for colours in tiles.PALETTES.values()]
    texts += [" ".join(tiles.SHAPES), " ".join(images.CIFAR10_NAMES), jaxgym.EMPTY, string.digits]
    texts += ["Board: " + " ".join(cell_code(v) for v in range(-1, RESTATED_VALUES - 1))]
    for game, presets in jaxgym.list_games().items():
        for preset in presets:
            env = jaxgym.make(game, preset)
            texts += [text.prompt(env), " ".join(text.value_names(env))]
        board = np.zeros(env.board_shape, np.int32)
        for action in range(min(env.num_actions, 4)):
            texts += [text.rationale(env, board, action), text.answer_text(env, action)]
    return texts


def vocabulary(texts: Iterable[str]) -> list[str]:
    """Special tokens, then every digit and mark (bare and with a space), then the newline, then
    every word of `texts` (bare and with a space), then reserved tokens up to a multiple of 64."""
    words = {p.strip() for t in texts for p in pieces(t) if re.fullmatch(r" ?[A-Za-z]+", p)}
    words |= set(EXTRA_WORDS)
    singles = list(string.digits) + list(MARKS)
    plain = singles + sorted(words)
    vocab = list(SPECIAL_TOKENS) + plain + [" " + p for p in plain] + ["\n", " "]
    reserved = -len(vocab) % VOCAB_MULTIPLE
    return vocab + [f"<|reserved_{i}|>" for i in range(reserved)]


def build(texts: Iterable[str] | None = None) -> Tokenizer:
    """A word-level tokenizer over `texts` (default: `game_corpus()`)."""
    vocab = vocabulary(game_corpus() if texts is None else texts)
    reserved = [t for t in vocab if t.startswith("<|reserved_")]
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS + tuple(reserved)]
    )
    return tokenizer


# ---- the wrapper the policy uses -------------------------------------------------------------


class GameTokenizer:
    """A `tokenizers.Tokenizer` plus the ids the policy needs.

    `encode(text) -> list[int]` (ValueError for text outside the vocabulary), `decode(ids)`
    (special tokens kept, padding dropped), `save(folder)` / `GameTokenizer.load(folder)`.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}")
        self.pad_id, self.unk_id = ids[PAD], ids[UNK]
        self.im_start_id, self.eos_id = ids[IM_START], ids[IM_END]
        self.vision_start_id, self.image_pad_id, self.vision_end_id = (
            ids[VISION_START], ids[IMAGE_PAD], ids[VISION_END])
        self.tag_ids = {t: ids[t] for t in TAG_TOKENS}
        self.number_ids = np.asarray(  # tokens that spell a number ("7", " 12")
            [i for i in range(self.vocab_size) if tokenizer.id_to_token(i) is not None
             and tokenizer.decode([i]).strip().isdigit()], np.int32)
        self.cell_code_ids = np.asarray(  # the restated board's cell codes (" AB")
            [i for i in (tokenizer.token_to_id(" " + cell_code(v))
                         for v in range(-1, RESTATED_VALUES - 1)) if i is not None], np.int32)
        self._definition = tokenizer.to_str()

    # Equal definitions compare equal: compiled functions that take the tokenizer as a static
    # argument are then shared by every load of the same tokenizer.json.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, GameTokenizer) and self._definition == other._definition

    def __hash__(self) -> int:
        return hash(self._definition)

    def encode(self, text: str) -> list[int]:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids = encoding.ids
        if self.unk_id in ids:
            unknown = [text[a:b] for i, (a, b) in zip(ids, encoding.offsets) if i == self.unk_id]
            raise ValueError(
                f"text outside the tokenizer's vocabulary: {unknown[:5]} (add the words to the "
                "corpus given to policy.tokenizer.build)")
        return ids

    def prompt_parts(self, prompt: str, num_image_tokens: int,
                     image_first: bool = False) -> tuple[list[int], list[int]]:
        """The model's input before its response, in two parts: what every board of a game
        shares (the model computes it once per batch), then each board's own part. By default
        the shared part is `<|im_start|>` + the instructions, and each board's the image
        `<|vision_start|>` + one `<|image_pad|>` per image token + `<|vision_end|>`, then the
        turn change `<|im_end|><|im_start|>`. `image_first`: the image comes before the
        instructions (Qwen2-VL's usual order), so only `<|im_start|>` is shared."""
        image = [self.vision_start_id] + [self.image_pad_id] * num_image_tokens
        image += [self.vision_end_id]
        instructions, turn = self.encode(prompt), [self.eos_id, self.im_start_id]
        if image_first:
            return [self.im_start_id], image + instructions + turn
        return [self.im_start_id] + instructions, image + turn

    def prompt_ids(self, prompt: str, num_image_tokens: int,
                   image_first: bool = False) -> list[int]:
        """`prompt_parts` joined: the whole input before the response."""
        prefix, rest = self.prompt_parts(prompt, num_image_tokens, image_first)
        return prefix + rest

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

    def save(self, folder: str | os.PathLike) -> None:
        """Write `tokenizer.json` and `tokenizer_config.json`, loadable by AutoTokenizer."""
        os.makedirs(folder, exist_ok=True)
        self.tokenizer.save(os.path.join(folder, "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": IM_START, "eos_token": IM_END, "pad_token": PAD, "unk_token": UNK,
            "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (PAD, UNK)],
            "clean_up_tokenization_spaces": False,
            "model_max_length": 4096,
        }
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "GameTokenizer":
        path = os.path.join(folder, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer.json in {folder}")
        try:
            return cls(Tokenizer.from_file(path))
        except Exception as err:  # tokenizers raises a bare Exception on a corrupt file
            raise ValueError(f"cannot read the tokenizer in {folder}: {err}") from err


@functools.cache
def default() -> GameTokenizer:
    """The project's tokenizer over `game_corpus()` (built once per process)."""
    return GameTokenizer(build())

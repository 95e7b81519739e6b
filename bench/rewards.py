"""What scoring a GRPO batch costs: `python -m bench.rewards --batch 2560 --think-chars 1000`.

GRPO scores every sampled response before its update. The project's tokenizer has a token for
each tag, so its responses are scored on the device (`policy.rewards.RewardFn`: a scan over
each response's characters); a downloaded checkpoint's BPE vocabulary has none, so its
responses are decoded and scored on the host (`policy.rewards.host_rewards`, the same numbers).
This times both on `--batch` responses to easy Swap boards (the expert's, with the think
lengthened to `--think-chars` characters, as a pretrained model's reasoning runs longer, by
reading the board over again):

  device  jitted `RewardFn` over the project's token ids, after its compile (reported apart);
  host    decoding the ids of a byte-level BPE (the `tokenizers` library, trained here on the
          responses, nothing downloaded) plus `host_rewards` on the texts, after a first
          call that compiles the game's step (reported apart).

Each figure is the best of `--repeats` runs. A GRPO step's share is the seconds here over the
step's (`bench.train` on the same machine and batch).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import jaxgym
from bench import write_json
from bench.env import machine
from policy import episodes, rewards
from policy import tokenizer as tokenization

def responses(env, batch: int, think_chars: int, seed: int) -> tuple[object, list[str]]:
    """(states, texts): `batch` fresh boards and the cold start's target for each (the
    expert's move), its think led by the board's description read over again until it has
    `think_chars` characters or more (words the project's tokenizer knows)."""
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(seed), batch))
    texts = []
    for board, text in zip(np.asarray(states.board), episodes.cold_start_texts(env, states)):
        again = jaxgym.text.describe_board(env, board) + "\n"
        texts.append(text.replace("<think>", "<think>" + again * -(-think_chars // len(again)), 1))
    return states, texts


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def bench_device(env, states, texts: list[str], repeats: int) -> dict:
    tok = tokenization.default()
    ids, mask = episodes.pad_responses(tok, texts, max(len(tok.encode(t)) for t in texts) + 1)
    score = rewards.compiled(env, tok)
    start = time.perf_counter()
    first = jax.block_until_ready(score(states, ids, mask))
    compile_s = time.perf_counter() - start
    seconds = best_seconds(lambda: score(states, ids, mask), repeats)
    return dict(seconds=seconds, compile_s=compile_s, tokens=int(mask.sum(1).mean()),
                valid=float(first.valid.mean()))


def byte_level_bpe(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def bench_host(env, states, texts: list[str], repeats: int, vocab_size: int) -> dict:
    bpe = byte_level_bpe(texts[:256], vocab_size)
    ids = [e.ids for e in bpe.encode_batch(texts)]
    if bpe.decode_batch(ids[:4]) != texts[:4]:
        raise RuntimeError("the byte-level BPE does not decode its own encoding back")

    def score():
        return rewards.host_rewards(env, states, bpe.decode_batch(ids)).valid

    start = time.perf_counter()
    first = jax.block_until_ready(score())  # compiles the game's step that scores the moves
    compile_s = time.perf_counter() - start
    decode_s = best_seconds(lambda: bpe.decode_batch(ids), repeats)
    seconds = best_seconds(score, repeats)
    return dict(seconds=seconds, decode_s=decode_s, compile_s=compile_s,
                tokens=int(np.mean([len(i) for i in ids])), vocab_size=bpe.get_vocab_size(),
                valid=float(first.mean()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.rewards",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2560, help="responses per batch "
                        "(2560: 512 boards x 5 samples)")
    parser.add_argument("--think-chars", type=int, default=1000)
    parser.add_argument("--vocab-size", type=int, default=4096, help="the BPE's entries")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if min(args.batch, args.repeats, args.vocab_size) < 1 or args.think_chars < 0:
        parser.error("--batch, --repeats and --vocab-size must be >= 1, --think-chars >= 0")
    env = jaxgym.make("swap", preset="easy")
    states, texts = responses(env, args.batch, args.think_chars, args.seed)
    print(f"{args.batch} Swap (easy) responses of {np.mean([len(t) for t in texts]):.0f} "
          f"characters, best of {args.repeats}; {machine()}")
    device = bench_device(env, states, texts, args.repeats)
    print(f"  device (project tokenizer, {device['tokens']} tokens): {device['seconds']:.3f} s "
          f"a batch (compile {device['compile_s']:.1f} s)")
    host = bench_host(env, states, texts, args.repeats, args.vocab_size)
    print(f"  host (byte-level BPE, {host['vocab_size']} entries, {host['tokens']} tokens): "
          f"{host['seconds']:.3f} s a batch, of which decoding {host['decode_s']:.3f} s "
          f"(first call {host['compile_s']:.1f} s)")
    results = dict(batch=args.batch, think_chars=args.think_chars, machine=machine(),
                   device=device, host=host)
    return write_json(args.json, results)


if __name__ == "__main__":
    main()

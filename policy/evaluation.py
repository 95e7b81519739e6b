"""Playing held-out boards with a policy and measuring what it sees and does: the one
evaluation path of the cold start, the trainer, the study and `python -m policy.evaluate`.

    policy = ModelPolicy.load("runs/sft-swap")               # or ModelPolicy(graphdef, params, ...)
    metrics, pictures = evaluate(games, policy, boards=256, steps=1)
    metrics, _ = play(games, policy, states, steps=1)        # boards dealt by the caller

Each step every board is drawn, the policy writes a response, the response is scored on the
device (`policy.rewards`) and the board steps with the parsed move (an invalid move leaves it
unchanged). Reported, over all boards and steps (and per game, as "game/metric", for a mix):

    valid_move_rate    fraction of answers that are legal moves
    hit_rate           fraction of answers whose move scores points (the paper's "hit")
    mean_game_reward   the game's own reward per step (points; -1 for an invalid move)
    perception_exact   fraction of responses whose <perception> block is exactly the board
    format_rate        fraction of responses with all three tag pairs in order

Held-out boards come from `fold_in(key(seed), HELD_OUT)`, a stream training never draws from.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import render
from jaxgym import multigame, text as game_text
from policy import checkpoint, episodes, sample, tokenizer as tokenization
from policy.episodes import GameSet

METRICS = ("valid_move_rate", "hit_rate", "mean_game_reward", "perception_exact",
           "perception_share", "format_rate")


@dataclasses.dataclass
class ModelPolicy:
    """A model's parameters, sampling at a temperature (0: greedy); `ModelPolicy.load(DIR)`
    reads a checkpoint, the constructor takes parameters in memory (a run in progress)."""

    graphdef: Any
    params: Any
    tokenizer: tokenization.GameTokenizer
    model_cfg: Any
    budget: int  # response tokens
    temperature: float = 0.0
    settings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, checkpoint_dir: str, temperature: float = 0.0) -> "ModelPolicy":
        graphdef, params, tokenizer, model_cfg, settings = checkpoint.load_policy(checkpoint_dir)
        return cls(graphdef, params, tokenizer, model_cfg, settings["response_budget"],
                   temperature, settings)

    @property
    def prompt_style(self) -> str:
        return self.settings.get("prompt_style", "full")

    @property
    def image_first(self) -> bool:
        return self.settings.get("image_first", False)

    @property
    def restate_board(self) -> bool:
        return self.settings.get("restate_board", False)

    def respond(self, games: GameSet, states, frames, key) -> tuple[jax.Array, jax.Array]:
        prompt = games.prompt(self.tokenizer, self.model_cfg, frames.shape[0])
        samples = sample.generate(self.graphdef, self.params, prompt, frames, key,
                                  self.temperature, max_new_tokens=self.budget,
                                  eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id)
        return samples.tokens, samples.mask


class TextPolicy:
    """A baseline that writes texts on the host: "expert" (the cold start's target: truth and
    the expert's move) or "random" (a uniformly random move of the action space in the right
    format, with an empty perception)."""

    prompt_style, image_first, restate_board = "full", False, False

    def __init__(self, kind: str, tokenizer: tokenization.GameTokenizer):
        if kind not in ("expert", "random"):
            raise ValueError(f"a text policy is 'expert' or 'random', got {kind!r}")
        self.kind, self.tokenizer = kind, tokenizer

    def respond(self, games: GameSet, states, frames, key) -> tuple[jax.Array, jax.Array]:
        if self.kind == "expert":
            texts = games.cold_start_texts(states)
        else:
            texts = games.base_texts(key, frames.shape[0])
        longest = max(len(self.tokenizer.encode(t)) for t in texts) + 1
        # padded to a multiple of 64, so that the scoring compiles for few lengths
        ids, mask = episodes.pad_responses(self.tokenizer, texts, -(-longest // 64) * 64)
        return jnp.asarray(ids), jnp.asarray(mask)


def play(games: GameSet, policy, states: tuple, steps: int = 1, seed: int = 0,
         record: int = 0, progress: bool = False, auto_reset: bool = False) -> tuple[dict, list]:
    """Play the boards `states` (a tuple of States, one per game of `games`) for `steps`
    steps. Returns (metrics, recorded pictures of the first `record` boards: annotated uint8
    frames, board after board, a board's steps in order). A policy writes token ids
    (`respond`) or texts (`respond_texts`, e.g. `policy.api.APIPolicy`), scored alike.
    `auto_reset`: a board whose episode ends is dealt afresh (the paper's protocol)."""
    boards = sum(len(s.board) for s in states)
    labels = games.labels()
    game_of = np.repeat(np.arange(len(games.envs)), [len(s.board) for s in states])
    totals: dict[str, float] = {}
    pictures = [[] for _ in range(min(record, boards))]  # per board, one per step
    for step in tqdm(range(steps), desc="evaluate", disable=not progress, unit="step"):
        key = jax.random.fold_in(jax.random.key(seed), step)
        frames = games.draw(states)
        if hasattr(policy, "respond_texts"):
            texts = policy.respond_texts(games, states, frames, key, step)
            rewards = games.score_texts(states, texts)
        else:
            tokens, mask = policy.respond(games, states, frames, key)
            rewards = games.score(policy.tokenizer, states, tokens, mask, jit=True)
            texts = [policy.tokenizer.decode_response(tokens[b], mask[b])
                     for b in range(len(pictures))]
        per_board = jax.device_get(dict(valid_move_rate=rewards.valid,
                                        hit_rate=rewards.valid * (rewards.points > 0),
                                        mean_game_reward=rewards.points,
                                        perception_exact=rewards.perception,
                                        perception_share=rewards.perception_share,
                                        format_rate=rewards.format))
        for name, values in per_board.items():
            totals[name] = totals.get(name, 0.0) + float(np.mean(values))
            if len(labels) > 1:
                for g, label in enumerate(labels):
                    key_name = f"{label}/{name}"
                    totals[key_name] = totals.get(key_name, 0.0) + float(
                        np.mean(values[game_of == g]))
        for b in range(len(pictures)):
            answer = game_text.extract_answer(texts[b])
            pictures[b].append(_caption(np.asarray(frames[b]), b, step, answer,
                                        bool(per_board["valid_move_rate"][b]),
                                        float(per_board["mean_game_reward"][b]),
                                        bool(per_board["perception_exact"][b])))
        states = games.step(states, rewards.action, auto_reset)
        if auto_reset:  # a fresh board still carries the ended episode's flags: play it as live
            states = tuple(s.replace(terminated=jnp.zeros_like(s.terminated),
                                     truncated=jnp.zeros_like(s.truncated)) for s in states)
    return ({name: total / steps for name, total in totals.items()},
            [picture for board in pictures for picture in board])


def evaluate(games: GameSet, policy, boards: int = 256, steps: int = 1, seed: int = 0,
             record: int = 0, progress: bool = True,
             protocol: str = "jaxgym") -> tuple[dict, list]:
    """`play` on `boards` fresh held-out boards (split evenly over the games of a mix).
    `protocol="paper"`: as the paper evaluates (`PAPER_PROTOCOL`): each board first takes its
    game's `paper_warm_up` random legal moves (2048: 100), and a board whose episode ends is
    dealt afresh."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    states = games.deal(episodes.eval_key(seed), boards, 0)
    paper = protocol == "paper"
    if paper:
        states = tuple(warm_up(env, s, jax.random.fold_in(episodes.eval_key(seed), g),
                               env.paper_warm_up)
                       for g, (env, s) in enumerate(zip(games.envs, states)))
    return play(games, policy, states, steps, seed, record, progress, auto_reset=paper)


PROTOCOLS = ("jaxgym", "paper")
PAPER_PROTOCOL = dict(boards=10, steps=100)
"""The paper's evaluation: 10 boards, 100 moves each, scored by `hit_rate`; each board first
takes its game's `paper_warm_up` random moves (2048: 100)."""


@functools.partial(jax.jit, static_argnames=("env", "moves"))
def warm_up(env, states, key: jax.Array, moves: int):
    """Every board advanced by `moves` uniformly random legal moves (`multigame.random_moves`),
    a board stopping before a move would end its episode; step counts start again at 0."""
    counts = jnp.full((len(states.board),), moves, jnp.int32)
    states = multigame.random_moves(env, states, key, counts, moves)
    return states.replace(step_count=jnp.zeros_like(states.step_count))


def _caption(frame: np.ndarray, board: int, step: int, answer: str | None, valid: bool,
             points: float, read_right: bool) -> np.ndarray:
    zoom = max(1, 320 // frame.shape[1])  # small boards: big enough to read the caption
    frame = frame.repeat(zoom, axis=0).repeat(zoom, axis=1)
    verdict = f"{'valid' if valid else 'invalid'} ({points:+g})"
    seen = "board read right" if read_right else "board read wrong"
    return render.annotate(frame, [f"board {board}, step {step + 1}: {answer}"[:40],
                                   f"{verdict}, {seen}"])


def table(rows: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per policy, one column per metric."""
    header = f"{'policy':<12}" + "".join(f"{m:>18}" for m in METRICS)
    lines = [header, "-" * len(header)]
    for name, metrics in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{metrics[m]:>18.3f}" for m in METRICS))
    return "\n".join(lines)

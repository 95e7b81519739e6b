"""Reinforcement learning with GRPO, the main job: `python -m policy.train --game swap`.

Each step deals fresh boards (some advanced by random legal moves), renders them, samples
`--samples` responses per board at temperature 1, scores them (game + perception + format
rewards, each switchable), and takes one GRPO update. Boards, pixels, samples, rewards and the
update all stay on the device; the host only reads the metrics.

    python -m policy.train --game swap                      # a useful run on a laptop CPU
    python -m policy.train --game swap --batch 4096         # big batches: micro-batched updates
    python -m policy.train --mode g0 --checkpoint-dir runs/g0 --steps 200
    python -m policy.train --checkpoint-dir runs/g1 --resume

`--mode g1` starts from the perception-enhanced cold start (`policy.sft`, run first unless
`--init DIR` points at a finished one), `g0` from the format-only base. The run folder gets
`train_metrics.jsonl` (one line per step, plus held-out evaluations), TensorBoard events under
`tb/`, orbax checkpoints every `--save-every` steps, and `play.gif` of the final policy.

Several devices: the board axis is split over every device of a ("data", "fsdp") mesh
(`policy.sharding`), and `jax.distributed.initialize()` runs first when a multi-host launcher's
variables are set (JAX_COORDINATOR_ADDRESS, SLURM, Open MPI). Parameters and optimiser state are
copied on every device (data parallel), or with `--fsdp K` split in K pieces over groups of K
devices, for models that do not fit one device; `--remat` recomputes each decoder layer's
activations in the backward pass instead of keeping them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

import jaxgym
import render
from policy import (checkpoint, config, episodes, evaluation, grpo, loop, model as vlm,
                    pretrained_model, rewards, sample, sft, sharding)
from policy.config import OptimConfig, knob, nested
from policy.grpo import GRPOConfig

REWARDS = ("shaped", "perception", "format")  # the default
# and the one to choose instead of perception: partial credit for a partly read board
REWARD_NAMES = REWARDS + ("perception_share",)
LOG = "train_metrics.jsonl"

RUN_PRESETS: dict[str, dict[str, Any]] = {
    # minutes on a 2-core CPU: tiny model, easy boards
    "cpu": dict(board_preset="easy", steps=60, batch=16, samples=5, lr=1e-4, eval_every=20,
                eval_boards=64, save_every=20, init_preset="cpu"),
    # one GPU: the small model, big batches
    "gpu": dict(board_preset="easy", steps=500, batch=512, samples=5, lr=5e-5, eval_every=50,
                eval_boards=512, save_every=100, init_preset="gpu"),
}
"""Run sizes (`--preset`): flat settings of TrainConfig (`policy.config.build`)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    game: str = knob("swap", "a game, or mix: every game in each batch")
    board_preset: str = knob("easy", "the game's difficulty preset")
    mode: str = knob("g1", "g1: from the cold start; g0: from the format-only base")
    steps: int = knob(60, "RL steps (one sampled batch each)")
    batch: int = knob(16, "boards per step")
    samples: int = knob(5, "responses per board (GRPO's group)")
    max_random_moves: int = knob(3, "boards are advanced by up to this many random moves")
    temperature: float = knob(1.0, "sampling temperature of the rollouts")
    rewards: tuple[str, ...] = knob(REWARDS, "which rewards count (summed)")
    grpo: GRPOConfig = knob(
        default_factory=lambda: GRPOConfig(optim=OptimConfig(lr=1e-4)),
        help="the update (microbatch 0: automatic, at most 256 sequences a slice)")
    sample_chunk: int = knob(0, "sequences sampled at a time; 0: automatic (at most 1024)")
    eval_every: int = knob(20, "steps between held-out evaluations")
    eval_boards: int = knob(64, "held-out boards per evaluation; 0: no evaluation")
    save_every: int = knob(20, "steps between checkpoints")
    init_preset: str = knob("cpu", "policy.sft run preset of the starting policy")
    init_steps: int = knob(0, "its steps (0: the preset's; for g0, a fifth of them)")
    init_schedule: str = knob("", "its learning-rate schedule after the warm-up: constant or "
                                  "cosine ('': the preset's)")
    init_batch: int = knob(0, "its boards (images) per step (0: the preset's); fewer leave its "
                              "perception partial while its text-only think still learns the move")
    init_think_from: str = knob("", "where its text-only rows start: think or perception "
                                    "(policy.sft --think-from; '': the preset's)")
    model: str = knob("", "a downloaded Qwen2-VL / Qwen2.5-VL folder to start from: g0 runs "
                          "RL from it as it is, g1 trains its cold start first")
    dtype: str = knob("float32", "that checkpoint's parameters: float32 or bfloat16")
    fsdp: int = knob(1, "split parameters and optimiser state over this many devices (FSDP); "
                        "1: a copy on each device")
    remat: bool = knob(False, "recompute decoder activations in the backward pass (less memory)")
    seed: int = knob(0, "the seed of boards, samples and the starting policy")

    def __post_init__(self) -> None:
        nested(self)
        checks = [
            (self.mode in ("g0", "g1"), f"mode must be g0 or g1, not {self.mode!r}"),
            (min(self.steps, self.batch, self.samples) >= 1, "steps, batch, samples must be >= 1"),
            (self.samples >= 2, "GRPO needs at least 2 samples per board"),
            (set(self.rewards) <= set(REWARD_NAMES) and self.rewards,
             f"rewards must be a non-empty subset of {REWARD_NAMES}"),
            (self.temperature > 0, "temperature must be > 0 (RL samples)"),
            (min(self.eval_every, self.save_every) >= 1, "eval_every, save_every must be >= 1"),
            (self.eval_boards >= 0, "eval_boards must be >= 0"),
            (self.init_batch >= 0, "init_batch must be >= 0"),
            (self.sample_chunk >= 0, "sample_chunk must be >= 0"),
            (self.fsdp >= 1, "fsdp must be >= 1"),
            (not self.model or os.path.isdir(self.model),
             f"model {self.model!r} is no folder (a downloaded checkpoint)"),
            (not self.model or self.game != "mix", "a checkpoint plays one game at a time"),
            (self.dtype in ("float32", "bfloat16"), "dtype must be float32 or bfloat16"),
            (self.init_schedule in ("", "constant", "cosine"),
             "init_schedule must be constant, cosine or '' (the preset's)"),
            (self.init_think_from in ("",) + sft.THINK_FROM,
             f"init_think_from must be one of {sft.THINK_FROM} or '' (the preset's)"),
            (self.init_preset in sft.RUN_PRESETS,
             f"init_preset must be one of {sorted(sft.RUN_PRESETS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    @property
    def sequences(self) -> int:
        return self.batch * self.samples

    def update_config(self) -> GRPOConfig:
        """`grpo` with its micro-batch resolved (ValueError if one given does not divide)."""
        return dataclasses.replace(self.grpo,
                                   microbatch=auto_slice(self.sequences, self.grpo.microbatch))


def auto_slice(sequences: int, requested: int, largest: int = 256,
               name: str = "--microbatch") -> int:
    """A slice of the batch (the update's micro-batch, the sampler's chunk): `requested` if it
    divides the batch (ValueError if not), else the largest divisor of `sequences` that is at
    most `largest`."""
    if requested:
        if sequences % requested:
            raise ValueError(f"{name} {requested} must divide batch x samples = {sequences}")
        return requested
    return max(d for d in range(1, min(sequences, largest) + 1) if sequences % d == 0)


# ---- devices ---------------------------------------------------------------------------------


def maybe_initialize_distributed() -> bool:
    """`jax.distributed.initialize()` when a multi-host launcher's variables are set."""
    launched = ("JAX_COORDINATOR_ADDRESS" in os.environ
                or int(os.environ.get("SLURM_NTASKS", "1")) > 1
                or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1)
    if launched:
        jax.distributed.initialize()
    return launched


# ---- the starting policy ---------------------------------------------------------------------


def init_config(cfg: TrainConfig) -> sft.SFTConfig:
    """The supervised run G1 (variant cold) or G0 (variant base) starts from."""
    options = dict(sft.RUN_PRESETS[cfg.init_preset], game=cfg.game,
                   board_preset=cfg.board_preset, seed=cfg.seed,
                   variant="cold" if cfg.mode == "g1" else "base")
    steps = cfg.init_steps or (options["steps"] if cfg.mode == "g1" else options["steps"] // 5)
    options.update(steps=steps, eval_every=min(options.get("eval_every", 100), steps),
                   save_every=steps, warmup_steps=steps // 20)
    if cfg.init_schedule:
        options.update(schedule=cfg.init_schedule)
    if cfg.init_batch:
        options.update(batch=cfg.init_batch)
    if cfg.init_think_from:
        options.update(think_from=cfg.init_think_from)
    options.update(fsdp=cfg.fsdp, remat=cfg.remat)  # a model RL splits is split for its cold start
    if cfg.mode == "g0":
        options.update(think_batch=0)  # the base learns the format alone: no move to train
    if cfg.model:
        options.update(sft.PRETRAINED, model=cfg.model, dtype=cfg.dtype)
    return config.build(sft.SFTConfig, **options)


def starting_policy(cfg: TrainConfig, run_dir: str, init: str | None, quiet: bool):
    """(graphdef, params, tokenizer, model config, response budget, init folder, the prompt
    settings it was trained with): `init` if given, else the run's own `init/` folder,
    trained first if it holds no checkpoint; for g0 from a downloaded checkpoint
    (`cfg.model`), that checkpoint as it is."""
    if cfg.model and cfg.mode == "g0":
        graphdef, params, tokenizer, model_cfg = pretrained_model.load_policy(cfg.model,
                                                                              cfg.dtype)
        prompt = {name: sft.PRETRAINED[name]
                  for name in ("prompt_style", "image_first", "restate_board")}
        games = pretrained_model.fit(episodes.GameSet.make(cfg.game, cfg.board_preset,
                                                           **prompt), cfg.model)
        return (graphdef, params, tokenizer, model_cfg, games.response_budget(tokenizer),
                cfg.model, prompt)
    folder = init or os.path.join(run_dir, "init")
    if checkpoint.latest_step(folder) is None:
        if init:
            raise ValueError(f"--init {init} holds no checkpoint")
        if not quiet:
            print(f"{cfg.mode}: training the starting policy into {folder}")
        sft.train(init_config(cfg), folder, resume=True, quiet=quiet)
    graphdef, params, tokenizer, model_cfg, settings = checkpoint.load_policy(folder)
    game = (settings.get("sft") or {}).get("game")
    if game != cfg.game:
        raise ValueError(f"the starting policy in {folder} was trained on {game!r}, not "
                         f"{cfg.game!r}")
    # the prompt it was trained with stays its prompt
    prompt = dict(prompt_style=settings.get("prompt_style", "full"),
                  image_first=settings.get("image_first", False),
                  restate_board=settings.get("restate_board", False))
    return graphdef, params, tokenizer, model_cfg, settings["response_budget"], folder, prompt


# ---- one step ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    """What the compiled rollout depends on (runs that share it share the compilation)."""

    games: episodes.GameSet
    graphdef: Any
    tokenizer: Any
    model_cfg: Any
    budget: int
    mesh: Mesh
    batch: int
    samples: int
    max_random_moves: int
    temperature: float
    rewards: tuple[str, ...]
    sample_chunk: int


def sample_in_chunks(params, prompt: sample.Prompt, frames, key, spec: RolloutSpec):
    """`sample.generate` over all sequences, `spec.sample_chunk` at a time under `lax.map`, so
    the key/value caches of a 4096 x 5 batch never exist at once. Chunk j takes sequences j,
    j + k, j + 2k, ... (k chunks), so each chunk spans every device of the mesh."""
    tokenizer, size = spec.tokenizer, frames.shape[0]

    def run(tokens, valid, group, frames, key):
        part = prompt._replace(tokens=tokens, valid=valid, group=group)
        return sample.generate(spec.graphdef, params, part, frames, key, spec.temperature,
                               max_new_tokens=spec.budget, eos_id=tokenizer.eos_id,
                               pad_id=tokenizer.pad_id)

    per_sequence = (prompt.tokens, prompt.valid, prompt.group, frames)
    if spec.sample_chunk >= size:
        return run(*per_sequence, key)
    k = size // spec.sample_chunk
    split = jax.tree.map(lambda x: x.reshape((spec.sample_chunk, k) + x.shape[1:]).swapaxes(0, 1),
                         per_sequence)
    out = jax.lax.map(lambda args: run(*args), split + (jax.random.split(key, k),))
    return jax.tree.map(lambda x: x.swapaxes(0, 1).reshape((size,) + x.shape[2:]), out)


def _sample_boards(params, key: jax.Array, spec: RolloutSpec):
    """(states, prompt, frames, samples) of one step: deal, draw, sample n responses a board."""
    games = spec.games
    deal_key, sample_key = jax.random.split(key)
    states = games.deal(deal_key, spec.batch, spec.max_random_moves)
    states = jax.lax.with_sharding_constraint(states, sharding.batch(spec.mesh))
    frames = jnp.repeat(games.draw(states), spec.samples, axis=0)  # each board drawn once
    states = games.repeat(states, spec.samples)  # board i's samples are adjacent
    prompt = games.prompt(spec.tokenizer, spec.model_cfg, spec.batch * spec.samples)
    return states, prompt, frames, sample_in_chunks(params, prompt, frames, sample_key, spec)


def _finish(prompt, frames, samples, scores, spec: RolloutSpec):
    """(grpo.Rollout, scores, float32[B*n] total reward): the rewards summed, group
    advantages."""
    total = sum(getattr(scores, name) for name in spec.rewards)
    advantages = grpo.group_advantages(total.reshape(spec.batch, spec.samples)).reshape(-1)
    batch = grpo.Rollout(prompt, frames, samples.tokens, samples.mask, samples.logprobs,
                         advantages)
    return batch, scores, total


@functools.partial(jax.jit, static_argnames=("spec",))
def rollout(params, key: jax.Array, spec: RolloutSpec):
    """(grpo.Rollout, per-sequence Rewards, float32[B*n] total reward) for one step: deal,
    draw, sample n responses per board, score them, group advantages; all on the device."""
    states, prompt, frames, samples = _sample_boards(params, key, spec)
    scores = spec.games.score(spec.tokenizer, states, samples.tokens, samples.mask)
    return _finish(prompt, frames, samples, scores, spec)


sample_boards = jax.jit(_sample_boards, static_argnames=("spec",))
finish = jax.jit(_finish, static_argnames=("spec",))


def host_scored_rollout(params, key: jax.Array, spec: RolloutSpec):
    """`rollout` for a tokenizer whose responses are scored from their text on the host (a
    downloaded checkpoint's, `rewards.on_device`): the same numbers, one transfer of the
    sampled tokens each way."""
    states, prompt, frames, samples = sample_boards(params, key, spec)
    scores = spec.games.score(spec.tokenizer, states, samples.tokens, samples.mask)
    return finish(prompt, frames, samples, scores, spec)


class Trainer:
    """The compiled rollout and update of one run, and the held-out evaluation."""

    def __init__(self, cfg: TrainConfig, games: episodes.GameSet, graphdef, tokenizer,
                 model_cfg, budget: int, mesh: Mesh):
        if cfg.batch % mesh.size:
            raise ValueError(f"--batch {cfg.batch} must be a multiple of the {mesh.size} devices")
        games.counts(cfg.batch)  # ValueError unless the batches split over the games
        if cfg.eval_boards:
            games.counts(cfg.eval_boards)
        self.cfg, self.games, self.graphdef = cfg, games, graphdef
        self.tokenizer, self.model_cfg, self.budget, self.mesh = tokenizer, model_cfg, budget, mesh
        self.grpo_cfg = cfg.update_config()
        self.tx = grpo.optimizer(self.grpo_cfg)
        self.update = grpo.compiled_update(graphdef, self.grpo_cfg)
        self.spec = RolloutSpec(games, graphdef, tokenizer, model_cfg, budget, mesh, cfg.batch,
                                cfg.samples, cfg.max_random_moves, cfg.temperature, cfg.rewards,
                                auto_slice(cfg.sequences, cfg.sample_chunk, 1024,
                                           "--sample-chunk"))

    def place(self, tree):
        """Parameters or optimiser state on the mesh: copied, or split over its "fsdp" axis."""
        return sharding.place(tree, self.mesh)

    def rollout(self, params, key):
        if rewards.on_device(self.tokenizer):
            return rollout(params, key, self.spec)
        return host_scored_rollout(params, key, self.spec)

    def step(self, params, opt_state, ref_params, key) -> tuple[Any, Any, dict]:
        """One RL step; returns (params, opt_state, metrics) with per-phase seconds."""
        started = time.perf_counter()
        batch, scores, total = jax.block_until_ready(self.rollout(params, key))
        sampled = time.perf_counter()
        params, opt_state, update = self.update(params, opt_state, ref_params, batch)
        jax.block_until_ready(params)
        done = time.perf_counter()
        on_device = dict(  # fetched in one transfer
            reward=total.mean(), shaped_reward=scores.shaped.mean(),
            perception_reward=scores.perception.mean(), format_reward=scores.format.mean(),
            perception_share=scores.perception_share.mean(),
            valid_move_rate=scores.valid.mean(), tokens=jnp.sum(batch.mask), **update)
        metrics = {name: float(value) for name, value in jax.device_get(on_device).items()}
        tokens = metrics.pop("tokens")
        metrics.update(response_length=tokens / self.cfg.sequences,
                       tokens_per_s=tokens / (sampled - started),
                       boards_per_s=self.cfg.batch / (done - started),
                       rollout_s=sampled - started, update_s=done - sampled)
        return params, opt_state, metrics

    def policy(self, params, temperature: float = 0.0) -> evaluation.ModelPolicy:
        return evaluation.ModelPolicy(self.graphdef, params, self.tokenizer, self.model_cfg,
                                      self.budget, temperature)

    def evaluate(self, params, held_out) -> dict:
        """Greedy held-out metrics: perception exact-match, valid-move, format, game points."""
        return evaluation.play(self.games, self.policy(params), held_out)[0]


# ---- the run -------------------------------------------------------------------------------


def train(cfg: TrainConfig, run_dir: str, resume: bool = False, init: str | None = None,
          quiet: bool = False, stop_after: int | None = None, gif_boards: int = 4) -> dict:
    """Run GRPO; returns the last held-out metrics. `stop_after`: stop (with a checkpoint)
    after that many steps, as if interrupted."""
    maybe_initialize_distributed()
    mesh = sharding.make_mesh(cfg.fsdp)
    os.makedirs(run_dir, exist_ok=True)
    settings = dict(kind="train", train=dataclasses.asdict(cfg))
    start = checkpoint.latest_step(run_dir) if resume else None
    if start is not None:
        saved = checkpoint.load_settings(run_dir)
        if saved.get("train") != json.loads(json.dumps(settings["train"])):
            raise ValueError(f"{run_dir} holds a run with other settings: {saved.get('train')}")
        init = saved["init"]
    elif checkpoint.latest_step(run_dir) is not None:
        raise ValueError(f"{run_dir} already holds a checkpoint; pass --resume or another folder")
    graphdef, ref_params, tokenizer, model_cfg, budget, init, prompt = starting_policy(
        cfg, run_dir, init, quiet)
    graphdef = vlm.with_remat(graphdef, ref_params, cfg.remat)
    games = episodes.GameSet.make(cfg.game, cfg.board_preset, **prompt)
    if cfg.model:
        games = pretrained_model.fit(games, cfg.model)
    settings.update(init=init, model=dataclasses.asdict(model_cfg), response_budget=budget,
                    pretrained=cfg.model or None, **prompt)
    trainer = Trainer(cfg, games, graphdef, tokenizer, model_cfg, budget, mesh)
    ref_params = trainer.place(ref_params)
    params, opt_state = ref_params, trainer.place(trainer.tx.init(ref_params))
    start = start or 0
    if start:
        tree = checkpoint.restore(run_dir, start, dict(params=params, opt_state=opt_state))
        params, opt_state = trainer.place(tree["params"]), trainer.place(tree["opt_state"])
    held_out = (games.deal(episodes.eval_key(cfg.seed), cfg.eval_boards, cfg.max_random_moves)
                if cfg.eval_boards else None)
    if not quiet:
        print(f"{cfg.game} ({cfg.board_preset}) GRPO, {cfg.mode} from {init}: {cfg.steps} steps x "
              f"{cfg.batch} boards x {cfg.samples} samples on {mesh.size} device(s), update in "
              f"slices of {trainer.grpo_cfg.microbatch}")

    def step_fn(state, step):
        params, opt_state = state
        key = jax.random.fold_in(jax.random.key(cfg.seed), step)
        params, opt_state, metrics = trainer.step(params, opt_state, ref_params, key)
        return (params, opt_state), metrics

    def save_fn(state, step):
        checkpoint.save(run_dir, step, dict(params=state[0], opt_state=state[1]), settings,
                        tokenizer)

    evaluate_fn = None if held_out is None else lambda state: trainer.evaluate(state[0], held_out)
    (params, _), completed, evaluation_metrics = loop.run(
        (params, opt_state), start, cfg.steps, step_fn, evaluate_fn, save_fn,
        loop.Log(run_dir, start, LOG), cfg.eval_every, cfg.save_every, run_dir,
        f"GRPO {cfg.mode}", quiet, stop_after,
        postfix=lambda m: dict(reward=f"{m['reward']:.2f}", valid=f"{m['valid_move_rate']:.2f}"),
        evaluate_first=True)
    if completed == cfg.steps and gif_boards and games.single:
        write_gif(games, trainer, params, os.path.join(run_dir, "play.gif"), gif_boards, cfg.seed)
    return evaluation_metrics


def write_gif(games: episodes.GameSet, trainer: Trainer, params, path: str, boards: int,
              seed: int) -> None:
    """An animation of the policy playing `boards` held-out boards for 3 moves each."""
    _, pictures = evaluation.evaluate(games, trainer.policy(params), boards=boards, steps=3,
                                      seed=seed, record=boards, progress=False)
    render.save_animation(path, pictures, fps=1.0)


# ---- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=sorted(RUN_PRESETS),
                        help="run size (default: cpu); flags given next to it win")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="run folder (default: runs/<game>-<mode>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the folder")
    parser.add_argument("--init", default=None,
                        help="checkpoint folder of the starting policy (default: train one)")
    parser.add_argument("--gif-boards", type=int, default=4, help="boards in play.gif (0: none)")
    parser.add_argument("--quiet", action="store_true")
    config.add_flags(parser, TrainConfig, choices=dict(
        game=sorted(jaxgym.list_games()) + ["mix"], mode=("g0", "g1"),
        init_preset=sorted(sft.RUN_PRESETS)))
    args = parser.parse_args(argv)
    try:
        cfg = config.build(TrainConfig, **{**RUN_PRESETS[args.preset],
                                           **config.given(args, TrainConfig)})
        cfg.update_config()
        auto_slice(cfg.sequences, cfg.sample_chunk, 1024, "--sample-chunk")
    except ValueError as error:
        parser.error(str(error))
    args.checkpoint_dir = args.checkpoint_dir or os.path.join("runs", f"{cfg.game}-{cfg.mode}")
    return cfg, args


def main(argv: list[str] | None = None) -> None:
    cfg, args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill -TERM saves like Ctrl-C
    started = time.time()
    try:
        metrics = train(cfg, args.checkpoint_dir, resume=args.resume, init=args.init,
                        quiet=args.quiet, gif_boards=args.gif_boards)
    except (ValueError, FloatingPointError) as error:
        raise SystemExit(f"error: {error}")
    print(f"done in {time.time() - started:.0f} s; run folder {args.checkpoint_dir}")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

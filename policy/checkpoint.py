"""Checkpoints with orbax: parameters, optimiser state and step under `DIR/<step>/`, the run's
settings in `DIR/config.json` and the tokenizer in `DIR/tokenizer/` (so a checkpoint folder is
all `policy.evaluate` and a resumed run need).

    save(run_dir, step, {"params": ..., "opt_state": ...}, settings, tokenizer)
    step = latest_step(run_dir)                      # None if there is none
    items = restore(run_dir, step, like={"params": ...})   # any subset of the saved items
    settings = load_settings(run_dir); tokenizer = load_tokenizer(run_dir)
    graphdef, params, tokenizer, model_cfg, settings = load_policy(run_dir)   # a model to run
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from policy import model as vlm, pretrained_model
from policy.tokenizer import GameTokenizer


def _manager(run_dir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(run_dir), options=options)


def save(run_dir: str, step: int, items: dict[str, Any], settings: dict, tokenizer) -> None:
    """Write `items` (name -> pytree of arrays) as step `step`; settings and tokenizer beside
    it. Waits until the files are complete."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)
    tokenizer.save(os.path.join(run_dir, "tokenizer"))
    with _manager(run_dir) as manager:
        args = ocp.args.Composite(**{k: ocp.args.StandardSave(v) for k, v in items.items()})
        manager.save(step, args=args, force=True)
        manager.wait_until_finished()


def latest_step(run_dir: str) -> int | None:
    if not os.path.isdir(run_dir):
        return None
    with _manager(run_dir) as manager:
        return manager.latest_step()


def restore(run_dir: str, step: int | None, like: dict[str, Any]) -> dict[str, Any]:
    """The items named in `like` as saved at `step` (default: the latest), each shaped like
    its value there (arrays or jax.ShapeDtypeStruct). FileNotFoundError if there is no
    checkpoint; ValueError if it does not match `like` or cannot be read."""
    step = latest_step(run_dir) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    args = ocp.args.Composite(**{
        k: ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, v))
        for k, v in like.items()})
    try:
        with _manager(run_dir) as manager:
            restored = manager.restore(step, args=args)
    except Exception as err:  # orbax raises many types for a damaged or mismatched folder
        raise ValueError(f"cannot restore step {step} from {run_dir}: {type(err).__name__}: "
                         f"{str(err)[:400]}") from err
    return {k: restored[k] for k in like}


def load_settings(run_dir: str) -> dict:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is no checkpoint folder (no config.json)")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def load_tokenizer(run_dir: str) -> GameTokenizer:
    return GameTokenizer.load(os.path.join(run_dir, "tokenizer"))


def load_policy(run_dir: str):
    """(graphdef, params, tokenizer, model config, settings) of a checkpoint folder's latest
    step: the model alone, without its optimiser state."""
    settings = load_settings(run_dir)
    if settings.get("pretrained"):  # trained from a downloaded folder: its layout, its tokenizer
        folder = settings["pretrained"]
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{run_dir} was trained from the checkpoint {folder}, which "
                                    "is not there (its layout is read from it)")
        graphdef, params, tokenizer, model_cfg = pretrained_model.load_policy(
            folder, settings["model"].get("dtype", "float32"))
    else:
        tokenizer = load_tokenizer(run_dir)
        model_cfg = vlm.ModelConfig(**settings["model"])
        graphdef, params = nnx.split(vlm.create(model_cfg, tokenizer.image_pad_id))
    abstract = jax.eval_shape(lambda: params)
    tree = restore(run_dir, None, dict(params=abstract))
    return graphdef, tree["params"], tokenizer, model_cfg, settings

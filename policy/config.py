"""Job settings: the optimiser both jobs share, and command lines made from the dataclasses.

A job's config is one frozen dataclass whose parts nest (`TrainConfig.grpo` is a `GRPOConfig`,
whose `optim` is an `OptimConfig`) instead of copying each other's fields. Every leaf field has
one flag, `--name-with-dashes`, whatever its depth, so names are unique across a config's parts
(`build` and `add_flags` check it); its help text is the field's `help` metadata (`knob`).

    cfg = build(TrainConfig, steps=4, lr=3e-3, kl_coef=0.0)        # flat names, nested config
    add_flags(parser, TrainConfig); cfg = build(TrainConfig, **preset, **given(args, TrainConfig))

A nested part given as a dict (a config read back from JSON) is rebuilt by `nested`.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

import optax


def knob(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with its command-line help: `lr: float = knob(1e-3, "peak learning
    rate")`. Mutable defaults go in `default_factory=`."""
    return dataclasses.field(default=default, metadata=dict(help=help), **kwargs)


def nested(config: Any) -> None:
    """In `__post_init__`: turn dict values of dataclass-typed fields (from JSON) into their
    dataclasses, and lists into tuples."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            object.__setattr__(config, f.name, kind(**value))
        elif isinstance(value, list):
            object.__setattr__(config, f.name, tuple(value))


# ---- the optimiser ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW after global-norm clipping; the learning rate warms up linearly for
    `warmup_steps`, then stays ("constant") or decays along a cosine to `final_lr` x lr by the
    last step ("cosine")."""

    lr: float = knob(1e-3, "peak learning rate")
    warmup_steps: int = knob(0, "linear learning-rate warm-up, in optimiser steps")
    schedule: str = knob("constant", "after the warm-up: constant, or cosine decay")
    final_lr: float = knob(0.05, "cosine schedule: the last step's rate, a fraction of lr")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    adam_b2: float = knob(0.999, "Adam's second-moment decay")
    max_grad_norm: float = knob(1.0, "gradients are clipped to this global norm")

    def __post_init__(self) -> None:
        checks = [(self.lr > 0, "lr must be > 0"),
                  (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
                  (self.schedule in ("constant", "cosine"), "schedule must be constant or cosine"),
                  (0 <= self.final_lr <= 1, "final_lr must be in [0, 1]"),
                  (self.weight_decay >= 0, "weight_decay must be >= 0"),
                  (0 < self.adam_b2 < 1, "adam_b2 must be in (0, 1)"),
                  (self.max_grad_norm > 0, "max_grad_norm must be > 0")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"OptimConfig: {message}")


def optimizer(cfg: OptimConfig, steps: int) -> optax.GradientTransformation:
    """The optimiser of a run of `steps` optimiser steps (a cosine schedule needs them)."""
    if cfg.schedule == "cosine":
        if steps < 1:
            raise ValueError("a cosine learning-rate schedule needs the run's steps (>= 1)")
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(cfg.warmup_steps, steps - 1),
                                                steps, end_value=cfg.lr * cfg.final_lr)
    elif cfg.warmup_steps:
        lr = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    else:
        lr = cfg.lr
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                       optax.adamw(lr, b2=cfg.adam_b2, weight_decay=cfg.weight_decay))


# ---- flat names <-> nested configs ---------------------------------------------------------


def leaves(cls: type) -> dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Every leaf field of a (nested) config class: flat name -> (path, field, type).
    ValueError if two parts share a name."""
    out: dict = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        inner = ({name: ((f.name,) + path, field, leaf) for name, (path, field, leaf)
                  in leaves(kind).items()} if dataclasses.is_dataclass(kind)
                 else {f.name: ((f.name,), f, kind)})
        for name, leaf in inner.items():
            if name in out:
                raise ValueError(f"{cls.__name__}: two settings are called {name!r}")
            out[name] = leaf
    return out


def build(cls: type, **settings: Any) -> Any:
    """`cls` from flat setting names (any depth); unnamed fields keep their defaults, also
    inside a nested part. ValueError for a name `cls` does not have."""
    table = leaves(cls)
    unknown = sorted(set(settings) - set(table))
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {unknown}; its settings are "
                         f"{sorted(table)}")
    return _replace(cls(), {table[name][0]: value for name, value in settings.items()})


def _replace(config: Any, by_path: dict[tuple[str, ...], Any]) -> Any:
    changes = {}
    for f in dataclasses.fields(config):
        mine = {path[1:]: v for path, v in by_path.items() if path[0] == f.name}
        if mine:
            changes[f.name] = mine[()] if () in mine else _replace(getattr(config, f.name), mine)
    return dataclasses.replace(config, **changes)


def flatten(config: Any) -> dict[str, Any]:
    """The flat settings of a config (what `build` takes back)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out.update(flatten(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


# ---- command lines -------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
              choices: dict[str, Any] | None = None) -> None:
    """One flag per leaf setting of `cls` (not those in `skip`), default None (= not given),
    restricted to `choices[name]` where given. Tuples of strings are comma-separated; dict
    settings have no flag."""
    choices = choices or {}
    for name, (_, f, kind) in leaves(cls).items():
        if name in skip:
            continue
        flag, text = "--" + name.replace("_", "-"), f.metadata.get("help", "")
        if name in choices:
            parser.add_argument(flag, choices=choices[name], default=None, help=text)
            continue
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif origin is tuple:
            parser.add_argument(flag, type=comma_list, default=None, help=text + " (a,b,...)")
        elif kind in (int, float, str):
            parser.add_argument(flag, type=kind, default=None, help=text)
        elif type(None) in args and len(args) == 2:  # Optional[x]
            inner = next(a for a in args if a is not type(None))
            parser.add_argument(flag, type=inner, default=None, help=text)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` that were given on the command line."""
    return {name: getattr(args, name) for name in leaves(cls)
            if getattr(args, name, None) is not None}


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)

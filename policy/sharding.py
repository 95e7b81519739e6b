"""Where a training run's arrays live on the devices: a 2-D mesh ("data", "fsdp").

Boards, frames and sampled sequences are split along their leading axis over every device.
Parameters and optimiser state are copied on each "data" row and split over the "fsdp" axis
(fully sharded data parallel): each array's largest dimension that the axis divides is cut in
`fsdp` pieces, so a model `fsdp` times bigger than one device's memory still fits. XLA inserts
the all-gathers before each use and the reduce-scatters of the gradients; the model code does
not change. `fsdp=1` is plain data parallelism.

    mesh = sharding.make_mesh(fsdp=4)            # 8 devices: 2 copies, each split in 4
    params = jax.device_put(params, sharding.of_params(params, mesh))
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp")
BATCH = PartitionSpec(AXES)  # the leading (board, sequence) axis over every device


def make_mesh(fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """All `devices` (default: every device) as a (devices / fsdp, fsdp) mesh."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    if fsdp < 1 or devices.size % fsdp:
        raise ValueError(f"fsdp {fsdp} must be >= 1 and divide the {devices.size} device(s)")
    return Mesh(devices.reshape(devices.size // fsdp, fsdp), AXES)


def param_spec(shape: tuple[int, ...], shards: int) -> PartitionSpec:
    """The largest dimension of `shape` that `shards` divides goes over "fsdp"; an array with
    none such (a scalar, an odd vector) or `shards` 1 is copied whole."""
    if shards > 1:
        for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
            if shape[dim] % shards == 0:
                return PartitionSpec(*("fsdp" if d == dim else None for d in range(len(shape))))
    return PartitionSpec()


def of_params(tree: Any, mesh: Mesh) -> Any:
    """A NamedSharding for each array of `tree` (parameters, or optimiser state, whose moments
    have the parameters' shapes and so get the same split)."""
    shards = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(np.shape(x), shards)), tree)


def place(tree: Any, mesh: Mesh) -> Any:
    """`tree` on the mesh as `of_params` says."""
    return jax.device_put(tree, of_params(tree, mesh))


def copied(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def batch(mesh: Mesh) -> NamedSharding:
    """Arrays whose leading axis is boards or sequences: split over every device."""
    return NamedSharding(mesh, BATCH)

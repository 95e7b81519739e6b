"""Image sources for the games whose tiles are pictures ("shisensho-images").

An image source is a set of classes with several different images of each. A tile type is a class,
and the copies of a type on a board show different images of it, so a player must match by class,
not by pixels. `load(source, images_per_class)` returns an `ImageSource`; the game uses its first
`classes` classes, and `image_atlas` turns them into sprites.

Sources:

- "digits" (the default, bundled with the package, nothing is downloaded): handwritten digits,
  10 classes "zero" .. "nine", up to 32 images of each, 8x8 pixels, drawn as dark ink on a light
  background. From the UCI "Optical Recognition of Handwritten Digits" data set (Alpaydin & Kaynak,
  1998; CC BY 4.0) as shipped by scikit-learn; see jaxgym/data/README.md and
  scripts/make_digits.py. The name "digits" always means this source; write "./digits" for a
  folder of that name.
- the path of a local CIFAR-10 folder (`cifar-10-batches-py`, as unpacked from the official
  `cifar-10-python.tar.gz`; the G1 paper's source): 10 classes of 32x32 RGB photos. Whichever of
  `data_batch_1` .. `data_batch_5` and `test_batch` are present are read, in that order, and only
  as many as needed; `images_per_class` images of each class are taken in file order. Class names
  come from `batches.meta` (the standard names if it is absent). The batches are Python pickles;
  they are read by an unpickler that builds only plain data and NumPy arrays, so a tampered file
  raises ValueError instead of running code.

Host-side NumPy; every bad input raises a ValueError that says what is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
import pathlib
import pickle
from typing import Any

import numpy as np
from PIL import Image

from jaxgym import sprites

DIGITS = "digits"
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_SIDE = 32


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSource:
    """Classes of images, read-only.

    class_names: tuple[str, ...]                     one name per class
    images: uint8[n_classes, per_class, h, w, 3]     RGB; images[k, i] is image i of class k
    """

    class_names: tuple[str, ...]
    images: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def images_per_class(self) -> int:
        return self.images.shape[1]


def load(source: str | os.PathLike = DIGITS, images_per_class: int = 8) -> ImageSource:
    """The first `images_per_class` images of every class of a source (cached).

    `source` is "digits" (bundled) or the path of a CIFAR-10 folder; see the module docstring.
    """
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, (int, np.integer)):
        raise ValueError(f"images_per_class must be an integer >= 1, got {images_per_class!r}")
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    return _load_cached(os.fspath(source), int(images_per_class))


@functools.lru_cache(maxsize=16)
def _load_cached(source: str, images_per_class: int) -> ImageSource:
    if source == DIGITS:
        names, images = _digits(images_per_class)
    else:
        names, images = _cifar10(source, images_per_class)
    images.setflags(write=False)  # shared by every caller of the cache
    return ImageSource(class_names=names, images=images)


# ---------------------------------------------------------------- the bundled digits


def _digits(images_per_class: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The bundled digits: names, uint8[10, images_per_class, 8, 8, 3]."""
    with (importlib.resources.files("jaxgym") / "data" / "digits.npz").open("rb") as f:
        data = np.load(f, allow_pickle=False)
        ink, names = data["images"], tuple(str(name) for name in data["class_names"])
    if images_per_class > ink.shape[1]:
        raise ValueError(
            f"the bundled 'digits' source has {ink.shape[1]} images of each class, "
            f"images_per_class={images_per_class} asks for more: use images_per_class <= "
            f"{ink.shape[1]}, or point image_source at a CIFAR-10 folder"
        )
    return names, dark_ink(ink[:, :images_per_class])


def dark_ink(ink: np.ndarray) -> np.ndarray:
    """uint8[..., h, w] bright ink on black -> uint8[..., h, w, 3] dark ink on white.

    [[0, 255]] -> [[[255, 255, 255], [0, 0, 0]]]
    """
    return np.repeat((255 - ink)[..., None], 3, axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- a CIFAR-10 folder


def _cifar10(folder: str, images_per_class: int) -> tuple[tuple[str, ...], np.ndarray]:
    """A CIFAR-10 folder: names, uint8[n_classes, images_per_class, 32, 32, 3]."""
    path = _cifar10_dir(folder)
    names = _cifar10_names(path)
    picked: list[list[np.ndarray]] = [[] for _ in names]
    files = [path / name for name in CIFAR10_BATCHES if (path / name).is_file()]
    for file in files:
        data, labels = _read_batch(file, len(names))
        for k, chosen in enumerate(picked):
            need = images_per_class - len(chosen)
            chosen.extend(data[labels == k][:need])
        if all(len(chosen) == images_per_class for chosen in picked):
            break
    _require_enough(picked, names, images_per_class, files)
    return names, planes_to_rgb(np.array(picked, np.uint8))


def _cifar10_dir(folder: str) -> pathlib.Path:
    """The folder as a path, checked to exist and to hold at least one batch file."""
    path = pathlib.Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"image source {folder!r} is neither 'digits' (the bundled source) nor an existing "
            f"directory: pass 'digits', or the path of a CIFAR-10 folder (cifar-10-batches-py, "
            f"unpacked from cifar-10-python.tar.gz)"
        )
    if not any((path / name).is_file() for name in CIFAR10_BATCHES):
        nested = path / "cifar-10-batches-py"
        hint = f"; did you mean {str(nested)!r}?" if nested.is_dir() else ""
        raise ValueError(
            f"image source {folder!r} holds none of the CIFAR-10 batch files "
            f"{', '.join(CIFAR10_BATCHES)}: point it at the cifar-10-batches-py folder unpacked "
            f"from cifar-10-python.tar.gz (the 'python version'){hint}"
        )
    return path


def _cifar10_names(path: pathlib.Path) -> tuple[str, ...]:
    """Class names from batches.meta, or the standard CIFAR-10 names if it is absent."""
    meta_file = path / "batches.meta"
    if not meta_file.is_file():
        return CIFAR10_NAMES
    names = _field(_read_pickle(meta_file), "label_names", meta_file)
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{meta_file}: label_names should be a non-empty list of class names")
    return tuple(_text(name) for name in names)


def _read_batch(file: pathlib.Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: uint8[n, 3072] rows (R, G, B planes of 32x32), int64[n] labels."""
    batch = _read_pickle(file)
    data = np.asarray(_field(batch, "data", file))
    labels = np.asarray(_field(batch, "labels", file))
    row = 3 * CIFAR10_SIDE * CIFAR10_SIDE
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        raise ValueError(
            f"{file}: 'data' should be uint8[n, {row}] (R, G, B planes of 32x32 pixels), got "
            f"{data.dtype}{list(data.shape)}: is this the CIFAR-10 python version?"
        )
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{file}: 'labels' should be {len(data)} integers, one per image, got "
            f"{labels.dtype}{list(labels.shape)}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{file}: labels should lie in 0..{num_classes - 1} (one per class name), found "
            f"{labels.min()}..{labels.max()}"
        )
    return data, labels.astype(np.int64)


def _require_enough(
    picked: list[list[np.ndarray]], names: tuple[str, ...], wanted: int, files: list[pathlib.Path]
) -> None:
    """ValueError naming the classes with fewer than `wanted` images in all the files."""
    counts = [len(chosen) for chosen in picked]
    short = [f"{name!r} ({n})" for name, n in zip(names, counts) if n < wanted]
    if short:
        raise ValueError(
            f"images_per_class={wanted}, but these classes have fewer images in "
            f"{', '.join(file.name for file in files)}: {', '.join(short)}; lower "
            f"images_per_class or add the missing batch files"
        )


def planes_to_rgb(rows: np.ndarray) -> np.ndarray:
    """uint8[..., 3072] CIFAR rows (R plane, G plane, B plane, each 32x32 row-major)
    -> uint8[..., 32, 32, 3]: pixel (y, x) = row[[i, 1024 + i, 2048 + i]] with i = 32 * y + x."""
    side = CIFAR10_SIDE
    planes = rows.reshape(*rows.shape[:-1], 3, side, side)
    return np.moveaxis(planes, -3, -1).copy()


# ---------------------------------------------------------------- safe pickles


class _DataOnlyUnpickler(pickle.Unpickler):
    """Builds plain containers and NumPy arrays; refuses every other global (no code runs).

    `_codecs.encode` is how Python 3 writes bytes in protocol 2 pickles (a pure function)."""

    NUMPY_NAMES = {"_reconstruct", "_frombuffer", "ndarray", "dtype", "scalar"}

    def find_class(self, module: str, name: str) -> Any:
        numpy_array = module.split(".")[0] == "numpy" and name in self.NUMPY_NAMES
        if numpy_array or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(file: pathlib.Path) -> Any:
    """A pickle written by Python 2 or 3 (bytes kept as bytes); ValueError if unreadable."""
    try:
        with open(file, "rb") as f:
            return _DataOnlyUnpickler(f, encoding="bytes").load()
    except Exception as err:  # a corrupt pickle can raise almost any exception type
        raise ValueError(
            f"{file} is not a readable CIFAR-10 pickle ({type(err).__name__}: {err}): "
            f"re-extract it from cifar-10-python.tar.gz (the python version)"
        ) from err


def _field(batch: Any, key: str, file: pathlib.Path) -> Any:
    """batch[b"key"] (as CIFAR-10 writes it) or batch["key"]; ValueError if neither exists."""
    if isinstance(batch, dict):
        for candidate in (key.encode(), key):
            if candidate in batch:
                return batch[candidate]
    found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
    raise ValueError(
        f"{file} lacks the key {key!r} that CIFAR-10 files have (found {found}): is this "
        f"a file of the CIFAR-10 python version?"
    )


def _text(name: Any) -> str:
    """b"cat" -> "cat"."""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


# ---- sprites ----------------------------------------------------------------------------------
# Board value v >= 0 shows image v % images_per_class of class v // images_per_class. Each image
# is resized with a smooth (bicubic) filter to fill the cell inside its one-pixel grid line.


def image_sprite(image: np.ndarray, px: int) -> np.ndarray:
    """uint8[h, w, 3] -> uint8[px, px, 3]: the image filling an empty cell inside its grid line."""
    inner = Image.fromarray(image).resize((px - 2, px - 2), Image.Resampling.BICUBIC)
    cell = sprites.blank_cell(px)
    cell[1:-1, 1:-1] = np.asarray(inner)
    return cell


@functools.lru_cache(maxsize=32)
def image_atlas(source: str, classes: int, images_per_class: int, px: int) -> np.ndarray:
    """uint8[classes * images_per_class + 1, px, px, 3]: sprite k * images_per_class + i is
    image i of class k; the empty cell last."""
    loaded = load(source, images_per_class)
    if not 1 <= classes <= loaded.num_classes:
        raise ValueError(
            f"classes={classes}, but image source {source!r} has {loaded.num_classes} classes"
        )
    if px < 3:
        raise ValueError(f"tile_px={px} is too small for an image inside the grid line; use >= 3")
    chosen = loaded.images[:classes].reshape(-1, *loaded.images.shape[2:])
    cells = [image_sprite(image, px) for image in chosen]
    return np.stack(cells + [sprites.blank_cell(px)])

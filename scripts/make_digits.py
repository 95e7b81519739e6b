"""Write jaxgym/data/digits.npz, the bundled image source of "shisensho-images".

    pip install scikit-learn      # only to run this script; jaxgym does not depend on it
    python scripts/make_digits.py

The source is scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" test set
(CC BY 4.0; Alpaydin & Kaynak 1998): 1797 images of 8x8 pixels, values 0..16 (16 = full ink).
This keeps the first PER_CLASS images of each digit, in the data set's order, scaled to 0..255:

    images: uint8[10, PER_CLASS, 8, 8]   ink is bright (255); jaxgym.images inverts it
    class_names: str[10]                 "zero" .. "nine"
"""

from __future__ import annotations

import pathlib

import numpy as np
from sklearn.datasets import load_digits

PER_CLASS = 32
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
OUT = pathlib.Path(__file__).resolve().parents[1] / "jaxgym" / "data" / "digits.npz"


def first_of_each_class(images: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """float[n, 8, 8], int[n] -> float[10, per_class, 8, 8], in data-set order."""
    return np.stack([images[labels == k][:per_class] for k in range(len(CLASS_NAMES))])


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Values 0..16 -> uint8 0..255: [0, 8, 16] -> [0, 128, 255]."""
    return np.rint(images * (255.0 / 16.0)).astype(np.uint8)


def main() -> None:
    digits = load_digits()
    chosen = to_uint8(first_of_each_class(digits.images, digits.target, PER_CLASS))
    assert chosen.shape == (len(CLASS_NAMES), PER_CLASS, 8, 8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, images=chosen, class_names=np.array(CLASS_NAMES))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): images {chosen.shape} {chosen.dtype}")


if __name__ == "__main__":
    main()

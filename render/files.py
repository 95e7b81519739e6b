"""Host-side helpers: write frames to PNG, GIF or MP4, and annotate a frame for people."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _as_image_array(frame) -> np.ndarray:
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected a uint8[H, W, 3] frame, got {array.dtype}{list(array.shape)}")
    return array


def save_png(path: str | os.PathLike, frame) -> None:
    """Write one uint8[H, W, 3] frame as a PNG."""
    iio.imwrite(path, _as_image_array(frame), extension=".png")


def save_animation(path: str | os.PathLike, frames: Iterable, fps: float = 2.0) -> None:
    """Write frames (each uint8[H, W, 3], all the same size) as a looping GIF, or as an MP4
    when `path` ends in .mp4 (needs the `video` extra: imageio-ffmpeg)."""
    stack = np.stack([_as_image_array(f) for f in frames])
    path = os.fspath(path)
    if path.lower().endswith(".mp4"):
        try:
            iio.imwrite(path, stack, fps=fps, extension=".mp4")
        except Exception as error:
            raise RuntimeError(
                f"could not write {path}: MP4 needs a video backend "
                "(pip install 'jaxgym[video]'); GIF works without one"
            ) from error
        return
    iio.imwrite(path, stack, duration=1000.0 / fps, loop=0, extension=".gif")


def annotate(
    frame,
    lines: Sequence[str] = (),
    boxes: Sequence[tuple[int, int, int, int]] = (),
    box_rgb: tuple[int, int, int] = (20, 20, 20),
) -> np.ndarray:
    """uint8[H + caption, W, 3]: the frame with rectangles drawn around `boxes`
    ((top, left, bottom, right) in pixels, e.g. from `render.cell_box`) and `lines` of text in
    a strip below it."""
    image = Image.fromarray(_as_image_array(frame))
    draw = ImageDraw.Draw(image)
    for top, left, bottom, right in boxes:
        for inset in range(3):
            draw.rectangle((left + inset, top + inset, right - 1 - inset, bottom - 1 - inset), outline=box_rgb)
    font = ImageFont.load_default(size=max(11, image.width // 24))
    line_height = font.getbbox("Ag")[3] + 4
    strip = Image.new("RGB", (image.width, line_height * len(lines) + 6 if lines else 0), (255, 255, 255))
    strip_draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        strip_draw.text((4, 3 + i * line_height), line, fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (image.width, image.height + strip.height), (255, 255, 255))
    out.paste(image, (0, 0))
    out.paste(strip, (0, image.height))
    return np.asarray(out)

"""Reading photos safely and turning them into model input, as DINOv2 expects.

Every failure becomes an `ImageReadError` with one sentence naming the problem, so a batch can record it
and go on with the good files.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from snakeweb.models import BackboneConfig

# A decompression bomb (a tiny file declaring e.g. 50k x 50k pixels) is refused before any pixel is
# allocated; 120 Mpx still admits any real camera photo.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageReadError(Exception):
    """A photo that cannot be used; the message names the reason in one sentence."""


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, upright
    sha256: str
    size_bytes: int
    width: int  # of the original, upright
    height: int


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB: 16-bit and float images are scaled, not clipped; transparency is laid on a
    neutral grey (the colour a transparent PNG shows to the eye varies; grey biases no species)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_bytes(data: bytes, min_side: int = 0) -> DecodedImage:
    """Decode image bytes into an upright RGB image (the first frame of an animation).

    `min_side` lets JPEG decoding skip detail that resizing would throw away anyway (DCT scaling via
    `draft`), which makes large photos several times cheaper to read. The declared size is checked before
    any pixel is decoded, so a decompression bomb never allocates its declared size.
    """
    if not data:
        raise ImageReadError("the file is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageReadError(f"the image declares {width} x {height} pixels, more than the {MAX_PIXELS:,} allowed")
            if width < 1 or height < 1:
                raise ImageReadError("the image has no pixels")
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF says turned a quarter: upright is tall
                width, height = height, width
            if min_side and image.format == "JPEG":
                image.draft("RGB", (min_side, min_side))
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"the image declares more pixels than the {MAX_PIXELS:,} allowed (a decompression bomb?)") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError("not an image, or a format snakeweb cannot read (use JPEG, PNG, WebP, GIF, BMP or TIFF)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError) as exc:
        # Pillow's ways of saying the data is cut short or corrupt
        raise ImageReadError(f"the image data is damaged or cut short ({exc})") from exc
    return DecodedImage(image=image, sha256=digest, size_bytes=len(data), width=width, height=height)


MAX_FILE_BYTES = 200_000_000  # no photo is larger; a bigger file is not read into memory


def read_image(path: str | Path, min_side: int = 0) -> DecodedImage:
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageReadError("it is a directory, not an image file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageReadError(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; no photo is that large")
        data = path.read_bytes()
    except PermissionError as exc:
        raise ImageReadError("permission denied: snakeweb may not read this file") from exc
    except FileNotFoundError as exc:
        raise ImageReadError("the file is missing (moved, deleted, or a broken link)") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})") from exc
    return decode_bytes(data, min_side=min_side)


def to_pixels(image: Image.Image, config: BackboneConfig) -> torch.Tensor:
    """Resize the short side to `resize_size` (bicubic), centre-crop `image_size`, normalise: [3, S, S]."""
    width, height = image.size
    scale = config.resize_size / min(width, height)
    resized = image.resize(
        (max(config.image_size, round(width * scale)), max(config.image_size, round(height * scale))),
        Image.Resampling.BICUBIC,
    )
    left = (resized.size[0] - config.image_size) // 2
    top = (resized.size[1] - config.image_size) // 2
    crop = resized.crop((left, top, left + config.image_size, top + config.image_size))
    array = np.asarray(crop, dtype=np.float32) / 255.0
    array = (array - np.asarray(config.mean, dtype=np.float32)) / np.asarray(config.std, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def thumbnail_jpeg(path: str | Path, size: int = 320) -> bytes:
    """A small upright JPEG of a stored photo for image grids: the browser gets ~20 kB instead of the
    original (SnakeCLEF photos reach several MB)."""
    image = read_image(path, min_side=size).image
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()

"""Reading photos safely and turning them into model input, as DINOv2 expects.

Every failure becomes an `ImageReadError` with one sentence naming the problem, so a batch can record it
and go on with the good files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

from snakeweb.models import BackboneConfig

if TYPE_CHECKING:
    import torch

# A decompression bomb (a tiny file declaring e.g. 50k x 50k pixels) is refused before any pixel is
# allocated; 120 Mpx still admits any real camera photo.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# A strip longer than 50:1 holds no usable snake once centre-cropped to a square (the crop would show a
# sliver of it), and resizing its short side would blow its long side up: 2 x 3000 px became 256 x 384,000.
MAX_ASPECT_RATIO = 50
# Modes whose channels may be averaged by `Image.reduce` (palette indices may not; Pillow cannot reduce I;16).
_REDUCIBLE_MODES = ("RGB", "RGBA", "L", "LA", "I", "F")
_PILLOW_ORDERS_PASSES = int(PIL.__version__.split(".")[0]) >= 13  # see `_vertical_first`


class ImageReadError(Exception):
    """A photo that cannot be used; the message names the reason in one sentence."""


@dataclass
class DecodedImage:
    image: Image.Image | None  # RGB, upright; None where the GPU decoded it (snakeweb.gpu_embed)
    sha256: str
    size_bytes: int
    width: int  # of the original, upright
    height: int
    frames: int = 1  # an animated GIF or WebP, or a multi-page TIFF, has more: only the first is used


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


def _ratio_text(width: int, height: int) -> str:
    """The long side over the short, rounded up (so a refused ratio never reads as the allowed 50)."""
    ratio = max(width, height) / min(width, height)
    return f"{ratio:,.0f}" if ratio >= 1000 else f"{math.ceil(ratio * 100) / 100:g}"


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Shrink by the integer factor that keeps the short side >= 2 x `min_side` (box averaging, cheap).

    Only images at least 4 x `min_side` on their short side change at all, so ordinary photos reach
    `to_pixels` exactly as decoded. For the huge ones it halves the peak memory of turning and RGB conversion
    (an 8000 x 6000 RGBA PNG: 0.9 GB -> 0.37 GB above the baseline), and the bicubic resize after it still
    shrinks by 2x or more: the model input moves by a few grey levels on average, as with JPEG's `draft`.
    """
    factor = min(image.size) // (2 * min_side)
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


@dataclass(frozen=True)
class ImageHeader:
    """What a photo's header says, read before any pixel is decoded."""

    format: str | None  # Pillow's name: "JPEG", "PNG", ...
    mode: str  # "RGB", "L", "CMYK", ...
    width: int  # upright (after the EXIF orientation)
    height: int
    orientation: int  # EXIF orientation tag, 1 when upright as stored
    progressive: bool  # a progressive JPEG


def _check_size(width: int, height: int) -> None:
    """Refuse decompression bombs, pixel-less images and strips beyond `MAX_ASPECT_RATIO` (ImageReadError)."""
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"the image declares {width} x {height} pixels, more than the {MAX_PIXELS:,} allowed")
    if width < 1 or height < 1:
        raise ImageReadError("the image has no pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):  # a quarter turn keeps the ratio
        raise ImageReadError(
            f"the image is {width} x {height} pixels, a {_ratio_text(width, height)}:1 strip; snakeweb accepts "
            f"aspect ratios up to {MAX_ASPECT_RATIO}:1 (crop it to the snake)"
        )


_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_JPEG_FRAMES = {0xC0: False, 0xC1: False, 0xC2: True}  # baseline, extended, progressive Huffman (8-bit): Pillow's too


def jpeg_header(data: bytes) -> ImageHeader | None:
    """`read_header` of an ordinary JPEG from its markers alone, about ten times cheaper than opening it with
    Pillow (the GPU embed path reads thousands a second). None for anything else or anything unusual (another
    format, an Adobe colour transform, lossless or arithmetic coding, odd EXIF): `read_header` then decides.
    Raises `ImageReadError` for a size `read_header` refuses (the same sentence). Markers: ITU-T T.81 B.1.1;
    EXIF orientation: the first IFD's tag 0x0112 (EXIF 2.3, 4.6.4)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end, orientation = 2, len(data), 1
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xE1 and segment[:6] == b"Exif\0\0":
            orientation = _exif_orientation(segment[6:])
            if orientation is None:
                return None
        elif marker == 0xEE and segment[:5] == b"Adobe":
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            mode = _JPEG_MODES.get(segment[5]) if len(segment) >= 6 else None
            if marker not in _JPEG_FRAMES or segment[0] != 8 or mode is None:
                return None
            height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
            _check_size(width, height)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            return ImageHeader("JPEG", mode, width, height, orientation, _JPEG_FRAMES[marker])
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block (1 when absent), None where the block is malformed."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd:ifd + 2], order), 12):
        if entry + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)
            return value if 1 <= value <= 8 else None
    return 1


def _open_checked(data: bytes) -> tuple[Image.Image, ImageHeader]:
    """Open image bytes lazily and refuse decompression bombs, pixel-less images and strips beyond
    `MAX_ASPECT_RATIO` from the header alone. Raises `ImageReadError` (or Pillow's own errors, which
    `_pillow_errors` turns into one)."""
    if not data:
        raise ImageReadError("the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    _check_size(width, height)
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # EXIF says turned a quarter: upright is tall
        width, height = height, width
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    return image, ImageHeader(image.format, image.mode, width, height, int(orientation or 1), progressive)


@contextlib.contextmanager
def _pillow_errors():
    """Pillow's many ways of saying the data is not an image, too large, cut short or corrupt -> one sentence."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"the image declares more pixels than the {MAX_PIXELS:,} allowed (a decompression bomb?)") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError("not an image, or a format snakeweb cannot read (use JPEG, PNG, WebP, GIF, BMP or TIFF)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError) as exc:
        raise ImageReadError(f"the image data is damaged or cut short ({exc})") from exc


def read_header(data: bytes) -> ImageHeader:
    """The header of image bytes (format, mode, upright size, orientation), checked as `decode_bytes` checks it.
    Raises `ImageReadError` with the same sentence `decode_bytes` would give for a refused header."""
    with _pillow_errors():
        return _open_checked(data)[1]


def jpeg_draft_factor(width: int, height: int, min_side: int) -> int:
    """The factor (1, 2, 4 or 8) by which `decode_bytes` decodes a JPEG of this size smaller through DCT scaling:
    the one Pillow's `JpegImageFile.draft` picks for a request of (min_side, min_side) (the largest that keeps
    both sides at least min_side; the decoded size is each side divided by it, rounded up). The GPU path
    averages over the same blocks, so its vectors stay those of this decoder (snakeweb.gpu_resize)."""
    scale = min(width // min_side, height // min_side) if min_side else 1
    return next(s for s in (8, 4, 2, 1) if scale >= s or s == 1)


def decode_bytes(data: bytes, min_side: int = 0) -> DecodedImage:
    """Decode image bytes into an upright RGB image (the first frame of an animation).

    `min_side` lets decoding skip detail that resizing would throw away anyway: JPEG through DCT scaling
    (`draft`), which makes large photos several times cheaper to read; other formats decode in full, then
    are shrunk by an integer factor (`_reduce`) before the copies that turning and RGB conversion make.
    The declared size is checked before any pixel is decoded, so a decompression bomb never allocates its
    declared size, and a strip beyond `MAX_ASPECT_RATIO` is refused unread.
    """
    with _pillow_errors():
        image, header = _open_checked(data)
        # is_animated stops at the second frame; n_frames (which walks them all) only for the few files that have more
        frames = int(image.n_frames) if getattr(image, "is_animated", False) else 1
        digest = hashlib.sha256(data).hexdigest()
        if min_side and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        elif min_side:
            image = _reduce(image, min_side)
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    return DecodedImage(image=image, sha256=digest, size_bytes=len(data), width=header.width, height=header.height,
                        frames=frames)


MAX_FILE_BYTES = 200_000_000  # no photo is larger; a bigger file is not read into memory


def read_image(path: str | Path, min_side: int = 0) -> DecodedImage:
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageReadError("it is a directory, not an image file")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a named pipe would wait for a writer forever
            raise ImageReadError("it is not a regular file (a named pipe, socket or device), so snakeweb does not read it")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageReadError(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; no photo is that large")
        data = path.read_bytes()
    except PermissionError as exc:
        raise ImageReadError("permission denied: snakeweb may not read this file") from exc
    except FileNotFoundError as exc:
        raise ImageReadError("the file is missing (moved, deleted, or a broken link)") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})") from exc
    return decode_bytes(data, min_side=min_side)


def _source_span(start: int, size: int, source: int, resized: int) -> tuple[float, float, int, int]:
    """Where resized pixels `start`..`start + size` lie along one axis of the source (a `source` -> `resized`
    resize): the box edges, and the whole source pixels the bicubic filter reads for them."""
    step = source / resized
    low, high = start * step, min(source, (start + size) * step)  # min: the product may overshoot by a rounding error
    reach = 2 * max(step, 1.0) + 1  # bicubic support: 2 pixels, widened by the step when shrinking; + 1 for rounding
    return low, high, max(0, math.floor(low - reach)), min(source, math.ceil(high + reach))


def _vertical_first(width: int, height: int, new_width: int, new_height: int) -> bool:
    """Whether Pillow resizes `width` x `height` to `new_width` x `new_height` vertically first: Pillow 13 does
    when the height loses more than twice as many pixels as the width (libImaging/Resample.c); earlier
    versions always go horizontally first."""
    return _PILLOW_ORDERS_PASSES and 0 < height - new_height and height - new_height > 2 * (width - new_width)


def pixel_array(image: Image.Image, config: BackboneConfig) -> np.ndarray:
    """Resize the short side to `resize_size` (bicubic), centre-crop `image_size`, normalise: [3, S, S].

    Only the crop is resampled: its box is mapped back into the source and handed to `resize(box=...)`,
    which reads just the source pixels under it plus the filter's reach. Memory and time thus depend on the
    model input and the short side, never on the long side (resize-then-crop made 256 x 384,000 pixels of a
    2 x 3000 strip). The output equals resize-then-crop up to Pillow's rounding of the box to float32.
    """
    width, height = image.size
    size = config.image_size
    scale = config.resize_size / min(width, height)
    resized_width, resized_height = max(size, round(width * scale)), max(size, round(height * scale))
    left, right, first_column, end_column = _source_span((resized_width - size) // 2, size, width, resized_width)
    top, bottom, first_row, end_row = _source_span((resized_height - size) // 2, size, height, resized_height)
    # Two one-axis passes in the order Pillow takes for the whole resize: each pass rounds to 8 bits, so the
    # other order differs by up to 20 grey levels on noisy content, and a single boxed resize would choose
    # its order from the crop's size instead. In each call the other axis is an exact copy (scale 1 at
    # whole-pixel offsets).
    bicubic = Image.Resampling.BICUBIC
    if _vertical_first(width, height, resized_width, resized_height):
        columns = image.resize((end_column - first_column, size), bicubic, box=(first_column, top, end_column, bottom))
        crop = columns.resize((size, size), bicubic, box=(left - first_column, 0, right - first_column, size))
    else:
        rows = image.resize((size, end_row - first_row), bicubic, box=(left, first_row, right, end_row))
        crop = rows.resize((size, size), bicubic, box=(0, top - first_row, size, bottom - first_row))
    array = np.asarray(crop, dtype=np.float32) / 255.0
    array = (array - np.asarray(config.mean, dtype=np.float32)) / np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def to_pixels(image: Image.Image, config: BackboneConfig) -> torch.Tensor:
    """`pixel_array` as a torch tensor [3, S, S] float32 (torch imported here: header reads stay light)."""
    import torch

    return torch.from_numpy(pixel_array(image, config))


def thumbnail_jpeg(path: str | Path, size: int = 320) -> bytes:
    """A small upright JPEG of a stored photo for image grids: the browser gets ~20 kB instead of the
    original (SnakeCLEF photos reach several MB)."""
    image = read_image(path, min_side=size).image
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()

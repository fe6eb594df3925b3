"""The CPU side of the GPU embed path, light enough for worker processes (no torch): read each photo, hash
it, read its header, and either keep its JPEG bytes for nvJPEG or decode it here with the CPU path's code.

Worker processes (not threads) do this on a GPU machine: reading headers and building records is Python work
that holds the GIL, and in threads it starved the threads that launch GPU work (snakeweb.gpu_embed).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snakeweb.images import (
    MAX_FILE_BYTES,
    DecodedImage,
    ImageHeader,
    ImageReadError,
    decode_bytes,
    jpeg_header,
    pixel_array,
    read_header,
    read_image,
)
from snakeweb.models import BackboneConfig

NVJPEG_MODES = ("RGB", "L")  # JPEG colour modes sent to nvJPEG; CMYK/YCCK go through Pillow


@dataclass
class Photo:
    """One photo after its reader: JPEG bytes for the GPU, CPU pixels, or an error (picklable)."""

    key: object
    record: DecodedImage | None = None
    error: str | None = None
    jpeg: bytes | None = None  # the file's bytes, for nvJPEG
    pixels: np.ndarray | None = None  # [3, S, S] float32 normalised, from the CPU decoder
    decoder: str | None = None  # "nvjpeg" or "pillow"


def why_cpu(header: ImageHeader, data: bytes, resize_size: int = 0) -> str | None:
    """Why a photo must take the CPU decoder instead of nvJPEG, or None when nvJPEG may take it.

    EXIF-turned photos: the CPU decoder turns them upright (nvJPEG does not read EXIF). A JPEG without its
    end-of-image marker is cut short: Pillow refuses it with a reason, where a GPU decoder may fill it with grey.
    Photos whose short side is below `resize_size` are enlarged for the model, and enlarging magnifies how
    nvJPEG's chroma upsampling differs from libjpeg's: on the 96-px HackerEarth photos nvJPEG's vectors were
    down to cosine 0.972 of the CPU path's (H200, benchmarks/gpu_embed.py --fidelity), Pillow's 0.99999 (fp32).
    They are cheap to decode on the CPU.
    """
    if header.format != "JPEG":
        return f"{header.format or 'unknown'} file"
    if header.mode not in NVJPEG_MODES:
        return f"{header.mode} JPEG"
    if header.orientation != 1:
        return "EXIF-turned"
    if not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return "no end-of-image marker"
    if min(header.width, header.height) < resize_size:
        return "smaller than the model input (enlarged)"
    return None


def read_bytes(source: str | Path | bytes) -> bytes:
    """A file's bytes, with `snakeweb.images.read_image`'s refusals (directory, too large, missing, no permission)."""
    if isinstance(source, bytes):
        return source
    path = Path(source)
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            return path.read_bytes()
    read_image(path)  # raises the ImageReadError the CPU path gives for this file
    raise ImageReadError("cannot read the file")  # pragma: no cover (read_image raised above)


def cpu_decode(photo: Photo, data: bytes, config: BackboneConfig) -> Photo:
    """Decode with the CPU path's code (`decode_bytes` + `pixel_array`) into `photo.pixels`, or set its error."""
    try:
        decoded = decode_bytes(data, min_side=config.resize_size)
        photo.pixels, photo.decoder = pixel_array(decoded.image, config), "pillow"
        decoded.image = None  # the pixels are made; the store records only the header facts
        photo.record, photo.jpeg = decoded, None
    except ImageReadError as exc:
        photo.error, photo.record, photo.jpeg = str(exc), None, None
    return photo


def prepare(item: tuple[object, str | Path | bytes], config: BackboneConfig, gpu_decoding: bool) -> Photo:
    """Read, hash and check one photo; JPEGs nvJPEG can take keep their bytes, the rest are decoded here."""
    key, source = item
    photo = Photo(key)
    try:
        data = read_bytes(source)
        header = jpeg_header(data) or read_header(data)
    except ImageReadError as exc:
        photo.error = str(exc)
        return photo
    if not gpu_decoding or why_cpu(header, data, config.resize_size):
        return cpu_decode(photo, data, config)
    photo.record = DecodedImage(image=None, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                                width=header.width, height=header.height)
    photo.jpeg, photo.decoder = data, "nvjpeg"
    return photo


def prepare_chunk(items: list[tuple[object, str | Path | bytes]], config: BackboneConfig, gpu_decoding: bool) -> list[Photo]:
    """`prepare` for several photos: one task per chunk, so a worker's cost per task is spread over them."""
    return [prepare(item, config, gpu_decoding) for item in items]

"""Resize, centre-crop and normalise a batch of decoded photos of different sizes on the device, in a few calls.

The GPU embed stage's producers used to resize one photo per call (`F.interpolate(mode="bicubic",
antialias=True)`: three or four kernel launches and the wrapper's Python per photo, under the GIL). On an H200
that was the largest share of their time (6.1 of 13.3 thread-seconds for 16,384 photos; benchmarks/results/
gpu_embed_h200.jsonl) while the model waited for them.

An antialiased resize is separable and linear: for one photo, out = Wy @ image @ Wx^T per channel, where Wy
[S, H] holds the filter weights of the S output rows the centre crop keeps over the H source rows (Wx likewise
for columns). This module computes every photo's Wy and Wx at once, with torch's own weight formula
(aten/src/ATen/native/UpSample.h `_compute_weights_aa`, the same as Pillow's `precompute_coeffs`: Keys' cubic
with a = -0.5, support widened by the scale when shrinking, weights normalised to sum 1), pads the photos into
one tensor (one copy per photo) and applies both as two batched matrix products. The result equals the
per-photo `interpolate` up to float32 summation order (tests/test_gpu_embed.py compares them).

Memory is bounded: photos are sorted by size and processed in groups whose padded float32 copy stays under
`MAX_PADDED_BYTES`, so a batch of 12 MP phone photos never needs tens of GB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from snakeweb.images import jpeg_draft_factor
from snakeweb.models import BackboneConfig

MAX_PADDED_BYTES = 1 << 30  # one group's padded float32 photos: 1 GiB (~1,700 px^2 x 3 x 4 B x 36 photos)
RESIZE_METHODS = ("batched", "per-photo")


def resize_method() -> str:
    """`SNAKEWEB_GPU_RESIZE` (batched, the default, or per-photo: the former way, kept to measure against)."""
    method = os.environ.get("SNAKEWEB_GPU_RESIZE", "batched").strip() or "batched"
    if method not in RESIZE_METHODS:
        from snakeweb.errors import SnakewebError

        raise SnakewebError(f"SNAKEWEB_GPU_RESIZE={method!r} is not a resize method; use {' or '.join(RESIZE_METHODS)}.")
    return method


def crop_geometry(height: int, width: int, config: BackboneConfig) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left) of `snakeweb.images.to_pixels`: the short side to
    `config.resize_size`, the long side to the rounded proportional size (at least S), the centre S x S."""
    size = config.image_size
    scale = config.resize_size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def resize_crop_normalise(images: Sequence[torch.Tensor], config: BackboneConfig, method: str | None = None,
                          jpeg_draft: bool = True) -> torch.Tensor:
    """[3, H, W] uint8 images (any device, any sizes) -> [N, 3, S, S] float32 model input, with `to_pixels`' geometry.

    With `jpeg_draft` (the images are JPEGs decoded in full, as nvJPEG decodes them), a photo the CPU decoder
    would decode smaller through DCT scaling (`images.jpeg_draft_factor`: 2, 4 or 8) is first averaged over the
    same blocks, rounded to 8 bits: without it, GPU vectors of large photos were at cosine 0.992-0.998 of the CPU
    path's (EfficientNet-Lite0; a 525 x 750 SnakeCLEF photo the lowest), with it 0.9986-0.9999. Then bicubic with
    antialiasing (torch's kernels follow Pillow's bicubic, a = -0.5) to the `crop_geometry` size, rounded to 8 bits
    as Pillow's output is, the centre S x S cut, normalised by the model's mean and std. `method`: "batched" (this
    module's matrix products; default from `resize_method`) or "per-photo" (one `interpolate` call per size).
    """
    size = config.image_size
    if not images:
        return torch.zeros((0, 3, size, size))
    device = images[0].device
    if jpeg_draft:
        images = [_as_drafted(image, config.resize_size) for image in images]
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=device)
    if (method or resize_method()) == "per-photo":
        _per_photo(images, config, out)
    else:
        _batched(images, config, out)
    out.round_().clamp_(0, 255)
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255
    return out.sub_(mean).div_(std)


def _as_drafted(image: torch.Tensor, min_side: int) -> torch.Tensor:
    """The image as `decode_bytes` would decode its JPEG (block averages where Pillow's draft scales the DCT; the
    last block of a side averages the pixels it has), float; the image itself where no draft applies."""
    factor = jpeg_draft_factor(image.shape[-1], image.shape[-2], min_side)
    if factor == 1:
        return image
    return F.avg_pool2d(image[None].float(), factor, factor, ceil_mode=True)[0].round_()


def _batched(images: Sequence[torch.Tensor], config: BackboneConfig, out: torch.Tensor) -> None:
    size = config.image_size
    spans = []  # per photo: (first row, rows, first column, columns) of the source pixels its crop reads, and the geometry
    for image in images:
        h, w = image.shape[-2:]
        new_h, new_w, top, left = crop_geometry(h, w, config)
        spans.append((*_source_span(h, new_h, top, size), *_source_span(w, new_w, left, size), h, w, new_h, new_w, top, left))
    order = sorted(range(len(images)), key=lambda i: (spans[i][1], spans[i][3]))
    start = 0
    while start < len(order):
        # grow the group while its padded float32 copy fits (one photo always does: it is padded to itself)
        end, height, width = start, 0, 0
        while end < len(order):
            grown_h, grown_w = max(height, spans[order[end]][1]), max(width, spans[order[end]][3])
            if end > start and (end - start + 1) * 3 * grown_h * grown_w * 4 > MAX_PADDED_BYTES:
                break
            height, width, end = grown_h, grown_w, end + 1
        members = order[start:end]
        padded = torch.zeros((len(members), 3, height, width), dtype=torch.float32, device=out.device)
        for k, i in enumerate(members):
            row, rows, column, columns = spans[i][:4]
            # only the source pixels under the crop's filters; uint8 -> float32 in the same copy
            padded[k, :, :rows, :columns].copy_(images[i][:, row:row + rows, column:column + columns])
        # the group's numbers cross to the device in one copy (each small copy from pageable memory waits for the stream)
        numbers = torch.tensor([[i, *spans[i]] for i in members], dtype=torch.float64)
        if out.device.type == "cuda":
            numbers = numbers.pin_memory()
        numbers = numbers.to(out.device, non_blocking=True)
        # columns: 0 photo, 1 first row, 3 first column, 5 height, 6 width, 7 resized height, 8 resized width, 9 top, 10 left
        # the widest filter of the group, in source pixels: 4 x the shrink factor (the cubic's support is 2 each side)
        taps = max(int(4 * max(spans[i][4] / spans[i][6], spans[i][5] / spans[i][7], 1.0)) + 3 for i in members)
        weights_rows = _aa_weights(numbers[:, 5], numbers[:, 7], numbers[:, 9], numbers[:, 1], size, height, taps)
        weights_columns = _aa_weights(numbers[:, 6], numbers[:, 8], numbers[:, 10], numbers[:, 3], size, width, taps)
        # [n, 1, S, H] @ [n, 3, H, W] @ [n, 1, W, S] -> [n, 3, S, S]
        resized = torch.matmul(torch.matmul(weights_rows[:, None], padded), weights_columns[:, None].transpose(-1, -2))
        out[numbers[:, 0].long()] = resized
        start = end


def _source_span(in_size: int, out_size: int, offset: int, count: int) -> tuple[int, int]:
    """(first, number) of the source pixels that output pixels offset .. offset + count - 1 read, with a pixel to
    spare on each side (weights outside a pixel's own window are zero, so a wider span changes nothing)."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    first = max(int(scale * (offset + 0.5) - support + 0.5) - 1, 0)
    last = min(int(scale * (offset + count - 0.5) + support + 0.5) + 1, in_size)
    return first, last - first


def _aa_weights(in_sizes: torch.Tensor, out_sizes: torch.Tensor, offsets: torch.Tensor, starts: torch.Tensor, count: int,
                padded: int, taps: int) -> torch.Tensor:
    """[n] float64 tensors on the device -> [n, count, padded] float32: row r of photo k holds the antialiased
    bicubic weights of output pixel offsets[k] + r (of out_sizes[k]) over source pixels starts[k] .. starts[k] +
    padded - 1 of the photo's in_sizes[k]; zero outside the pixel's window and beyond the photo, so padding never
    contributes. The formula of torch's `_compute_weights_aa` (align_corners=False), in float64 over each output
    pixel's window of at most `taps` source pixels, then laid into the dense matrix (the only large tensor made:
    a dense float64 formula made several, gigabytes for a group of large photos)."""
    device = in_sizes.device
    in_size = in_sizes[:, None, None]
    scale = in_size / out_sizes[:, None, None]
    shrinking = scale >= 1.0
    support = torch.where(shrinking, 2.0 * scale, torch.full_like(scale, 2.0))  # interp_size / 2 = 2 for bicubic
    invscale = torch.where(shrinking, 1.0 / scale, torch.ones_like(scale))
    out_index = offsets[:, None, None] + torch.arange(count, dtype=torch.float64, device=device)[None, :, None]
    center = scale * (out_index + 0.5)  # [n, count, 1]
    first = torch.clamp(torch.trunc(center - support + 0.5), min=0.0)  # C++ static_cast<int64_t>: towards zero
    last = torch.minimum(torch.trunc(center + support + 0.5), in_size)  # one past the last source pixel
    source = first + torch.arange(taps, dtype=torch.float64, device=device)[None, None, :]  # [n, count, taps]
    x = ((source - center + 0.5) * invscale).abs()
    a = -0.5  # Keys' cubic as Pillow and torch's antialiased bicubic use it
    cubic = torch.where(x < 1.0, ((a + 2) * x - (a + 3)) * x * x + 1,
                        torch.where(x < 2.0, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, torch.zeros_like(x)))
    inside = source < last
    weights = torch.where(inside, cubic, torch.zeros_like(cubic))
    total = weights.sum(-1, keepdim=True)
    weights = weights / torch.where(total != 0, total, torch.ones_like(total))
    column = (source - starts[:, None, None]).clamp(0, padded - 1).long()  # a tap outside the window has weight 0
    dense = torch.zeros((len(in_sizes), count, padded), dtype=torch.float32, device=device)
    return dense.scatter_add_(2, column, weights.to(torch.float32))  # each window's columns are distinct: no sums


def _per_photo(images: Sequence[torch.Tensor], config: BackboneConfig, out: torch.Tensor) -> None:
    size = config.image_size
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(i)
    for (height, width), members in groups.items():
        new_h, new_w, top, left = crop_geometry(height, width, config)
        # one photo per call unless sizes repeat: stacking costs a copy, and the launches are what the producer spends
        batch = images[members[0]][None] if len(members) == 1 else torch.stack([images[i] for i in members])
        resized = _bicubic_antialiased(batch.float(), new_h, new_w)
        crop = resized[:, :, top:top + size, left:left + size]
        if len(members) == 1:
            out[members[0]].copy_(crop[0])
        else:
            out[members] = crop


_BICUBIC_AA = getattr(torch._C._nn, "_upsample_bicubic2d_aa", None)


def _bicubic_antialiased(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.interpolate(mode="bicubic", antialias=True)`, calling its kernel directly where torch exposes it:
    the Python wrapper's checks cost more than the launch, and a producer ran this once per photo."""
    if _BICUBIC_AA is not None:
        return _BICUBIC_AA(x, [height, width], False, None)
    return F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)

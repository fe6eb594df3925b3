"""Augmented views of training photos: extra rows for the trained head, embedded once by the embed stage.

A frozen backbone gives one vector per photo, so a linear head on 3,000 photos sees each of them once; the
features of a mirror image (or a closer crop) are other plausible photos of the same animal. Views are made
from the photo's normalised centre-crop pixels [B, 3, S, S], so they cost one more forward pass each and no
extra decode. Only train-split photos get them; validation, test, the kNN references and identify stay one
vector per photo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snakeweb.errors import SnakewebError

if TYPE_CHECKING:  # torch is imported where a view is made: the command line lists the views without it
    import torch

ZOOM = 0.8  # the zoomed view keeps the centre 80% of the crop, resized back up


def _zoom(pixels: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    size = pixels.shape[-1]
    kept = round(size * ZOOM)
    start = (size - kept) // 2
    centre = pixels[..., start:start + kept, start:start + kept]
    return F.interpolate(centre, size=(size, size), mode="bicubic", antialias=True, align_corners=False)


TRAIN_VIEWS = {
    "flip": lambda pixels: pixels.flip(-1),
    "zoom": _zoom,
    "zoom+flip": lambda pixels: _zoom(pixels).flip(-1),
}
# None by default: on HackerEarth-35 validation the mirror views did not help the swept, early-stopped heads
# (linear+kNN top-1 / macro-F1: Lite0 38.4 / 30.6 -> 37.3 / 30.5, Lite1 37.6 / 29.2 -> 39.3 / 30.3, Lite0+1+2
# 41.2 / 35.3 -> 40.5 / 35.3, README "Quality"), though scikit-learn's fixed-C logistic regression gained 1-3 points.
DEFAULT_TRAIN_VIEWS: tuple[str, ...] = ()


def parse_views(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validated view names, in the registry's order; "none" (or nothing) means no views."""
    wanted = [] if names is None else [n for n in names if n != "none"]
    unknown = sorted(set(wanted) - set(TRAIN_VIEWS))
    if unknown:
        raise SnakewebError(f"Unknown training view(s) {', '.join(unknown)}; use none or any of {', '.join(TRAIN_VIEWS)}.")
    return tuple(v for v in TRAIN_VIEWS if v in wanted)


def view_pixels(pixels: torch.Tensor, view: str) -> torch.Tensor:
    """The augmented view `view` (a name in TRAIN_VIEWS) of normalised centre-crop pixels [B, 3, S, S]."""
    return TRAIN_VIEWS[view](pixels)

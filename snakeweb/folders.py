"""A photo folder as ingest reads it: one subfolder of photos per species, unlabelled photos at the top."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from snakeweb.errors import SnakewebError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}
# Files that live beside photos and are not photos: listed in the ingest summary, never stored as images.
COMPANION_SUFFIXES = {".csv", ".txt", ".md", ".json", ".db", ".ini", ".xml", ".yaml", ".yml", ".pdf"}


OUTSIDE_FOLDER = "it links to a file outside the image folder, which snakeweb does not read"


def link_problem(path: Path, root: Path, outside: str = OUTSIDE_FOLDER) -> str | None:
    """Why a file under `root` cannot be read as one of its photos because of where it leads, or None: a link that
    leads outside `root` (after following links and `..`: the sentence `outside`), or a link loop (which
    `Path.resolve` raises on)."""
    try:
        path.resolve().relative_to(root.resolve())
        return None
    except ValueError:
        if path.is_dir():  # a species folder linked in from elsewhere: none of its photos is read
            return "it is a link to a folder outside the image folder, whose photos snakeweb does not read (copy them in)"
        return outside
    except (RuntimeError, OSError):  # RuntimeError: Python 3.11-3.12's "Symlink loop"; OSError: ELOOP from 3.13
        return "it is a symbolic link that leads back to itself (a link loop), so there is no file to read"


def scan_folder(root: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per candidate photo, companion files skipped, hidden files skipped). Species folders give labelled
    photos, files at the top are unlabelled. Every other file is kept: one that is not a usable image is recorded
    with its reason by the embed stage, and a link that leads outside the folder (or round in a loop) is rejected
    here. Hidden files (a name or folder starting with ".", which file browsers do not show: macOS's ._ copies,
    thumbnail caches) are left out and listed, never dropped unsaid."""
    if not root.is_dir():
        raise SnakewebError(f"{root} is not a folder. Give a folder with one subfolder of photos per species.")
    rows, skipped, hidden = [], [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            if not path.is_dir() or path.is_symlink():
                hidden.append(relative.as_posix())
            continue
        if path.is_dir() and not path.is_symlink() and path.suffix.lower() not in IMAGE_SUFFIXES:
            continue  # a species folder; a folder named like an image is kept and rejected with its reason
        if path.is_symlink() and path.is_dir() and link_problem(path, root) is None:
            skipped.append(relative.as_posix() + "/")  # a link to a folder inside: its photos are listed where they are
            continue
        if path.suffix.lower() in COMPANION_SUFFIXES or path.name in {"Thumbs.db", "desktop.ini"}:
            skipped.append(relative.as_posix())
            continue
        species = relative.parts[0] if len(relative.parts) > 1 else None  # matched to the species table by ingest
        rows.append({"path": str(path.absolute()), "observation_id": relative.as_posix(), "species": species,
                     "error": link_problem(path, root)})
    if not rows:
        raise SnakewebError(f"No photos under {root}" + (f" except {len(hidden)} hidden file(s) (names starting with '.'), "
                                                          "which snakeweb leaves out." if hidden else "."))
    return pd.DataFrame(rows), skipped, hidden

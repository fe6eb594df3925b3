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


NOT_UTF8 = ("is not valid UTF-8 text (it was written on a system with another encoding), so snakeweb cannot store it; "
            "rename it")


def readable(text: str) -> str:
    """`text` as valid UTF-8 text: a file name that is not UTF-8 reaches Python with its bytes as lone surrogates
    (PEP 383), which DuckDB, pandas and pyarrow refuse; each such byte is written as `\\xe9` instead."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _name_problem(relative: Path) -> str | None:
    """Why a photo at `relative` (to the image folder) cannot be stored under its name, or None: a name of its own, or
    of a folder above it, that is not valid UTF-8."""
    bad = [part for part in relative.parts if readable(part) != part]
    if not bad:
        return None
    if bad[0] == relative.name:
        return f"its name {NOT_UTF8}"
    return f"the name of its folder {readable(bad[0])} {NOT_UTF8}"


class NoPhotosError(SnakewebError):
    """A folder with no photo in it (an ingest into a store that holds photos adds what that leaves unchanged)."""


def scan_folder(root: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per candidate photo, companion files skipped, hidden files skipped). Species folders give labelled
    photos, files at the top are unlabelled. Every other file is kept: one that is not a usable image is recorded
    with its reason by the embed stage, and a link that leads outside the folder (or round in a loop) is rejected
    here. Hidden files (a name or folder starting with ".", which file browsers do not show: macOS's ._ copies,
    thumbnail caches) are left out and listed, never dropped unsaid. A photo whose name (or a folder's above it) is
    not valid UTF-8 is recorded under that name made readable (`readable`), with its reason."""
    if not root.is_dir():
        raise SnakewebError(f"{readable(str(root))} is not a folder. Give a folder with one subfolder of photos per species.")
    if readable(str(root.absolute())) != str(root.absolute()):
        raise SnakewebError(f"The path of the image folder {readable(str(root.absolute()))} is not valid UTF-8 text; "
                            "rename it, or copy the photos into a folder whose name is.")
    rows, skipped, hidden = [], [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            if not path.is_dir() or path.is_symlink():
                hidden.append(readable(relative.as_posix()))
            continue
        if path.is_dir() and not path.is_symlink() and path.suffix.lower() not in IMAGE_SUFFIXES:
            continue  # a species folder; a folder named like an image is kept and rejected with its reason
        if path.is_symlink() and path.is_dir() and link_problem(path, root) is None:
            skipped.append(readable(relative.as_posix()) + "/")  # a link to a folder inside: its photos are listed where they are
            continue
        if path.suffix.lower() in COMPANION_SUFFIXES or path.name in {"Thumbs.db", "desktop.ini"}:
            skipped.append(readable(relative.as_posix()))
            continue
        problem = _name_problem(relative)
        # matched to the species table by ingest; a folder name that cannot be stored names no species
        species = relative.parts[0] if len(relative.parts) > 1 and readable(relative.parts[0]) == relative.parts[0] else None
        rows.append({"path": readable(str(path.absolute())), "observation_id": readable(relative.as_posix()),
                     "species": species, "error": problem or link_problem(path, root)})
    if not rows:
        raise NoPhotosError(f"No photos under {root}" + (f" except {len(hidden)} hidden file(s) (names starting with '.'), "
                                                          "which snakeweb leaves out." if hidden else "."))
    return pd.DataFrame(rows), skipped, hidden

"""One photo, one path: the spelling a store keeps for a file, whatever spelling the user gives.

`--images ../photos`, `--images /abs/photos/` and `--images photolink` (a link to the folder) name the same files;
stored as given, a second ingest took each spelling for new photos (three images per photo, no warning). A file's
key is its folder's real path (links and `..` resolved, `os.path.realpath`) joined with its own name: the file
itself is not resolved, so a link inside a folder stays a photo of its own, named as the user named it. A path
that matches a stored one by key takes the stored spelling (stores made before keep theirs); a new one is stored
by its key.
"""

from __future__ import annotations

import errno
import ntpath
import os
import posixpath
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path


def file_keys(paths: Iterable[str]) -> list[str]:
    """The key of each absolute path (its folder's real path + its name); each folder is resolved once. Any other
    path names a file on the machine that made it (a relative path or a URI in an embeddings file: `photos/1.jpg`,
    `s3://b/1.jpg`), not one under the folder an import happens to run from: its key is itself, written one way
    (`./photos//1.jpg` is `photos/1.jpg`, `C:/p/1.jpg` is `C:\\p\\1.jpg`, `file:///p/1.jpg` is the local `/p/1.jpg`)."""
    folders: dict[str, str] = {}
    keys = []
    for path in map(_written, paths):
        if not os.path.isabs(path):
            keys.append(path)
            continue
        folder, name = os.path.split(os.path.normpath(path))
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        keys.append(os.path.join(real, name))
    return keys


def _written(path: str) -> str:
    """One way of writing a path that is spelled several ways: a file:// URI as the local path it names, a
    Windows path with backslashes, any other relative path without `.`, `//` or `x/..` (normalised as text, so a
    link on this machine cannot change it). Other URIs are left as they are."""
    if path.startswith("file://"):
        parsed = urllib.parse.urlparse(path)
        if parsed.netloc in ("", "localhost"):
            return urllib.request.url2pathname(parsed.path)
        return path
    if "://" in path or (os.path.isabs(path) and not _windows(path)):
        # a local absolute path: on POSIX a backslash is an ordinary character of a file name (a Windows zip unpacked
        # here gives `Crotalus atrox\IMG_1.jpg`), so only the path as written names the file on disk
        return path
    if _windows(path) or "\\" in path:  # a relative path with backslashes was written on Windows
        return ntpath.normpath(path)
    return posixpath.normpath(path)


def _windows(path: str) -> bool:
    """Whether `path` is written as Windows writes an absolute path: a drive letter (`C:\\p`, `C:/p`) or a UNC share."""
    return bool(re.match(r"^[A-Za-z]:[\\/]", path)) or path.startswith("\\\\")


def under_root(root: Path, written: str) -> str:
    """The absolute path of a metadata image_path under `root`: as written, or, where it has backslashes and names no
    file as written, with them read as folder separators (metadata written on Windows: `Natrix natrix\\1.jpg`)."""
    path = str((root / written).absolute())
    if "\\" in written and not os.path.lexists(path):
        path = str((root / written.replace("\\", "/")).absolute())
    return path


def as_stored(paths: Iterable[str], stored: Iterable[str]) -> list[str]:
    """The path to store for each of `paths`: the stored path with the same key when there is one, else the key."""
    return Spellings(stored)(paths)


class Spellings:
    """`as_stored` against one set of stored paths, their keys worked out once for many batches of paths."""

    def __init__(self, stored: Iterable[str]):
        stored = list(stored)
        self._spelling = dict(zip(file_keys(stored), stored))

    def __call__(self, paths: Iterable[str]) -> list[str]:
        return [self._spelling.get(key, key) for key in file_keys(paths)]


def same_file_groups(paths: list[str]) -> list[list[int]]:
    """Positions of `paths` that name one file on this machine (the same device and inode after following links: a
    symbolic or hard link), in groups of two or more, each in list order. Paths that cannot be read are left out
    (the embed stage records them); the same path twice is one group too."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            continue
        groups.setdefault((stat.st_dev, stat.st_ino), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def second_names(paths: list[str], folders: list[str | None], shown: Callable[[str], str],
                 stored: set[str] = frozenset()) -> list[str | None]:
    """Why each path must give way to another name of the same file in the list, or None. The same file is the
    same (device, inode) after following links: a symbolic link to a listed photo, or a hard link. The photo
    itself is kept, under its own species folder (`folders`: each path's species folder, None at the top): the
    name already in the store (`stored`), else the first that is not a symbolic link, whatever folder sorts
    first. Hard links in two species folders leave no name that says which species the photo is, so all its
    names are refused. Two names of one photo would put it twice in the store, perhaps under two species, or
    once in training and once in validation. `shown` turns a path into the name a sentence uses; paths that
    cannot be read are left to the embed stage."""
    reasons: list[str | None] = [None] * len(paths)
    for members in same_file_groups(paths):
        real = [i for i in members if not os.path.islink(paths[i])]
        if len({folders[i] for i in real}) > 1:
            for i in members:
                other = next(j for j in real if folders[j] != folders[i]) if i in real else real[0]
                reasons[i] = (f"it is the same file as {shown(paths[other])} (a hard link) in another species folder, so "
                              "which species it shows is ambiguous; keep one copy of the photo")
            continue
        kept = next((i for i in real if paths[i] in stored), real[0] if real else members[0])
        for i in members:
            if i != kept:
                how = "a link to" if os.path.islink(paths[i]) else "a hard link of"
                reasons[i] = f"it is {how} {shown(paths[kept])}, which is in the folder already, and a photo is stored once"
    return reasons


def unwritable_folder(folder: Path) -> OSError | None:
    """Why files cannot be made in `folder` (or in the folders that would be made down to it): a file stands where
    a folder is needed, or a real try at a temporary file fails (root passes every permission check, yet cannot
    write in /proc, /sys or on a read-only mount), as the OSError making one would raise; None when they can.
    The one check for the store's outputs (`outputs.refuse_an_unwritable_path`) and the OpenVINO cache."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return NotADirectoryError(errno.ENOTDIR, "a file stands where a folder is needed", str(existing))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return PermissionError(errno.EACCES, exc.strerror or "this user may not write there", str(existing))
    return None

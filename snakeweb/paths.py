"""One photo, one path: the spelling a store keeps for a file, whatever spelling the user gives.

`--images ../photos`, `--images /abs/photos/` and `--images photolink` (a link to the folder) name the same files;
stored as given, a second ingest took each spelling for new photos (three images per photo, no warning). A file's
key is its folder's real path (links and `..` resolved, `os.path.realpath`) joined with its own name: the file
itself is not resolved, so a link inside a folder stays a photo of its own, named as the user named it. A path
that matches a stored one by key takes the stored spelling (stores made before keep theirs); a new one is stored
by its key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def file_keys(paths: Iterable[str]) -> list[str]:
    """The key of each path (absolute, its folder's real path + its name); each folder is resolved once."""
    folders: dict[str, str] = {}
    keys = []
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        keys.append(os.path.join(real, name))
    return keys


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


def same_file_as_earlier(paths: list[str]) -> list[str | None]:
    """For each path, the earlier path in the list that is the same file (a link to it, followed all the way:
    `os.path.realpath`), else None. Two links to one photo would put it twice in the store, perhaps once in
    training and once in validation."""
    first: dict[str, str] = {}
    earlier: list[str | None] = []
    for path in paths:
        real = os.path.realpath(path)
        earlier.append(first.get(real))
        first.setdefault(real, path)
    return earlier

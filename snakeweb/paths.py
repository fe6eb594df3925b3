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
    """The key of each absolute path (its folder's real path + its name); each folder is resolved once. Any other
    path is its own key, as written: a relative path or a URI in an embeddings file (`photos/1.jpg`, `s3://b/1.jpg`)
    names a file on the machine that made it, not one under the folder an import happens to run from."""
    folders: dict[str, str] = {}
    keys = []
    for path in paths:
        if not os.path.isabs(path):
            keys.append(path)
            continue
        folder, name = os.path.split(os.path.normpath(path))
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


def same_file_elsewhere(paths: list[str]) -> list[str | None]:
    """For each path, another path of the list that is the same file, when this one should give way to it, else
    None. The same file is the same (device, inode) after following links: a symbolic link to a listed photo, or a
    hard link. The one kept is the first that is not a symbolic link (the photo itself, whatever folder sorts
    first), else the first. Two names of one photo would put it twice in the store, perhaps under two species, or
    once in training and once in validation. Paths that cannot be read are left to the embed stage (None)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            continue
        groups.setdefault((stat.st_dev, stat.st_ino), []).append(i)
    elsewhere: list[str | None] = [None] * len(paths)
    for members in groups.values():
        if len(members) > 1:
            kept = next((i for i in members if not os.path.islink(paths[i])), members[0])
            for i in members:
                if i != kept:
                    elsewhere[i] = paths[kept]
    return elsewhere

"""sha256 of files, read in 1 MB chunks (never the whole file in memory): one implementation for the model
fingerprints, the offline weights, the embeddings files an import records and the OpenVINO cache checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20  # bytes per read


def update_with_file(digest: hashlib._Hash, source: Path | BinaryIO) -> hashlib._Hash:
    """Feed a file's bytes (a path, or a binary handle read from where it stands) to `digest`; returns it.
    Raises OSError."""
    if isinstance(source, Path):
        with open(source, "rb", buffering=0) as handle:
            return update_with_file(digest, handle)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while read := source.readinto(buffer):
        digest.update(view[:read])
    return digest


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes. Raises OSError."""
    return update_with_file(hashlib.sha256(), Path(path)).hexdigest()


def folder_digest(folder: Path) -> str:
    """The sha256 of a transformers model folder: its weights and configs (.safetensors, .bin, .json), each file's
    name then bytes, in name order; other files (a README) do not change it. Raises OSError."""
    digest = hashlib.sha256()
    for file in sorted(Path(folder).iterdir()):
        if file.suffix in {".safetensors", ".bin", ".json"} and file.is_file():
            digest.update(file.name.encode())
            update_with_file(digest, file)
    return digest.hexdigest()

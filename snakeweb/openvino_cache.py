"""The OpenVINO cache's own integrity: which converted models and compiled blobs may be used.

Neither cache is trusted on its size alone: a file overwritten in place keeps its size, and OpenVINO imports a
garbled model or blob without a word (a tester's same-size overwrite moved a prediction 0.953 -> 0.893, exit 0).
conversion.json records the sha256 of every file the conversion wrote and `compiled/digests.json` that of every
blob OpenVINO wrote; snakeweb.openvino_backend checks both here before use (once per process per file: ~1 GB/s,
~0.1 s for the default backbone's three networks). Imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from snakeweb.digests import update_with_file

log = logging.getLogger(__name__)

MODEL_FILE = "model.xml"
BLOB_DIGESTS = "digests.json"  # {"sizes": {blob: bytes}, "sha256": {blob: hex}}, written after each compile
_DIGESTS_TEMP = ".digests-"  # BLOB_DIGESTS being written (renamed into place: readers never see half of it)

_DIGESTS: dict[tuple, str] = {}  # (path, device, inode, size, mtime, ctime) -> sha256: each file hashed once a process
_DIGESTS_LOCK = threading.Lock()


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MB chunks. Remembered for the process, keyed by the file's stat as
    opened, so a file is hashed once per process (load_message asks at every page) and again only when it has
    changed or been replaced. Raises OSError."""
    with open(path, "rb", buffering=0) as handle:
        stat = os.fstat(handle.fileno())
        key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(key)
        if known is None:
            known = update_with_file(hashlib.sha256(), handle).hexdigest()
            with _DIGESTS_LOCK:
                _DIGESTS[key] = known
    return stat.st_size, known


def _matches(folder: Path, sizes, digests) -> bool:
    """Whether every file named in `digests` is in `folder` with the recorded size and sha256 (sizes first: cheap)."""
    if not isinstance(sizes, dict) or not isinstance(digests, dict):
        return False
    for name, digest in digests.items():
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            return False
        try:
            if (folder / name).stat().st_size != sizes.get(name) or file_digest(folder / name) != (sizes[name], digest):
                return False
        except OSError:
            return False
    return True


def _read_json(path: Path) -> dict:
    """A JSON object from a file; {} when it is missing, unreadable or not an object."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def is_converted(folder: Path) -> bool:
    """A whole, undamaged converted model: model.xml, model.bin and conversion.json there, and every file the
    conversion wrote of the size and sha256 conversion.json records (a truncated, emptied or overwritten file makes
    the folder be converted again instead of failing at every load, or worse, answering from garbled weights)."""
    record = _read_json(folder / "conversion.json")
    digests = record.get("sha256")
    # A folder converted before the digests were recorded (no "sha256") counts as not converted: it is converted
    # again once, on its first use, and from then on its content is checked, not only its sizes.
    if not isinstance(digests, dict) or not {MODEL_FILE, "model.bin"} <= digests.keys():
        return False
    return _matches(folder, record.get("sizes"), digests)


def _blob_files(compiled: Path) -> list[Path]:
    """The files OpenVINO wrote in a compiled-blob folder (all but the digests and a digests file being written).
    Raises OSError (FileNotFoundError when there is no such folder)."""
    return sorted(p for p in compiled.iterdir()
                  if p.name != BLOB_DIGESTS and not p.name.startswith(_DIGESTS_TEMP) and p.is_file())


def compiled_cache_state(compiled: Path) -> str:
    """What a compiled-blob folder holds: "empty" (nothing, or no folder), "ok" (every blob of its recorded size and
    sha256), "damaged" (a blob differs from its record), "unrecorded" (a blob with no record: written by an older
    snakeweb, or by a compile killed before recording it) or "unreadable". Only "empty" and "ok" may be handed to
    OpenVINO, which imports a blob without checking its content."""
    try:
        files = _blob_files(compiled)
    except FileNotFoundError:
        return "empty"
    except OSError:
        return "unreadable"
    if not files:
        return "empty"
    record = _read_json(compiled / BLOB_DIGESTS)
    sizes, digests = record.get("sizes"), record.get("sha256")
    if not isinstance(sizes, dict) or not isinstance(digests, dict) or not all(f.name in digests for f in files):
        return "unrecorded"
    return "ok" if _matches(compiled, sizes, {f.name: digests[f.name] for f in files}) else "damaged"


def record_blobs(compiled: Path) -> None:
    """Record the size and sha256 of every blob in `compiled` (called after a compile, under the compile lock, when
    every blob there was either checked before it or just written by OpenVINO), written beside them and renamed
    into place. Never raises: a blob left unrecorded is deleted and compiled again by the next process."""
    temp = None
    try:
        measured = {f.name: file_digest(f) for f in _blob_files(compiled)}
        if not measured:
            return
        handle, temp = tempfile.mkstemp(prefix=_DIGESTS_TEMP, dir=compiled)
        with os.fdopen(handle, "w") as out:
            json.dump({"sizes": {n: s for n, (s, _) in measured.items()}, "sha256": {n: d for n, (_, d) in measured.items()}},
                      out, indent=1)
            out.write("\n")
        os.chmod(temp, 0o644)
        os.replace(temp, compiled / BLOB_DIGESTS)
        temp = None
    except OSError as exc:  # the folder replaced or removed under us, a full disk: the blob is not used unchecked
        log.info("OpenVINO: could not record the compiled blobs' digests in %s (%s)", compiled, exc)
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)

"""Writing a store's outputs safely: refuse a path that would overwrite the store's own files or cannot be written,
before any work, and write through a temporary file renamed into place, so a half-written file is never read."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.paths import unwritable_folder
from snakeweb.store import DB_NAME, HEAD_NAME, HOLDER_NAME, INDEX_NAME, LOCK_NAME


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets it, racing other threads); 022 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


# a store's own files: an export written over one of them would destroy the store
STORE_FILES = (DB_NAME, DB_NAME + ".wal", DB_NAME + ".tmp", INDEX_NAME, HEAD_NAME, LOCK_NAME, HOLDER_NAME)


def refuse_a_store_file(out: Path, instead: str) -> None:
    """Raises SnakewebError, before any work, when the output path `out` is one of any store's own files
    (STORE_FILES in a folder holding a store); `instead` is a file name to suggest (e.g. submission.csv)."""
    out = Path(out)
    if out.name in STORE_FILES and (out.parent / DB_NAME).is_file():
        raise SnakewebError(f"Cannot write {out}: it is a store's own {out.name}, and writing there would destroy the store; "
                            f"give another file, e.g. {shell_word(out.parent / instead)}.")
    refuse_an_unwritable_path(out)


def refuse_an_unwritable_path(path: Path) -> None:
    """Raises SnakewebError when `path` (through a symbolic link: the file it names) is a folder, a device, pipe or
    socket, or a read-only file, or when files cannot be made in its folder (`paths.unwritable_folder`: a file on
    the way, or a real try that fails): said before any work (an export ran its whole predict pass first, and, run as root, replaced the
    device /dev/full with a file). Sentences name the path as given."""
    real = Path(os.path.realpath(path))
    if real.exists() and not real.is_dir():
        mode = real.stat().st_mode
        if not stat.S_ISREG(mode):
            raise SnakewebError(f"Cannot write {path}: it is not a regular file (a device, pipe or socket); give a file name.")
        if not mode & 0o222:
            raise SnakewebError(f"Cannot write {path}: the file is read-only; remove it or give another name.")
    if real.is_dir():
        raise SnakewebError(f"Cannot write {path}: it is a folder; give a file name in it.")
    problem = unwritable_folder(real.parent)
    if isinstance(problem, NotADirectoryError):
        raise SnakewebError(f"Cannot write {path}: {problem.filename} is a file, not a folder; give another path.")
    if problem is not None:  # tried for real: /proc or a read-only mount is said here, before any work
        raise SnakewebError(f"Cannot write {path}: files cannot be made in {problem.filename} ({problem.strerror}); "
                            "give a path in a folder you may write to.")


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename over `path`: readers see the old file or the whole new one. Raises
    SnakewebError for what `refuse_an_unwritable_path` refuses, and for a write the system refuses."""
    refuse_an_unwritable_path(path)
    real = Path(os.path.realpath(path))  # through a symbolic link: the file it names is replaced, the link stays
    tmp = None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{real.name}.", dir=real.parent)
        os.close(handle)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file should get the mode any new file gets
        os.replace(tmp, real)
    except OSError as exc:  # named by the path the user gave, not by the temporary file beside it
        raise SnakewebError(f"Cannot write {path}: {exc.strerror or exc}; give a path in a folder you may write to, "
                            "on a disk with room.") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)

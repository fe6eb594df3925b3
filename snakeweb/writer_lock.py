"""One building command at a time per store.

DuckDB's own file lock is held for one transaction at a time, so two builds into one store used to interleave:
both embedded every photo (the work done twice, each saying it had embedded them all), and a second build with
another `--model` that started while the first was still embedding was not refused, wrote vectors of its own
model beside the first's and ended in a traceback at the index stage. The commands that build a store (build,
ingest, embed, index, train, predict, project, import-embeddings) therefore hold an exclusive lock on
`<store>/.writer.lock` for their whole run; a second one is refused at once with a sentence naming the first.
Reading (identify, the dashboard, check, export) and reviews never wait for it.

The lock is an OS file lock (`filelock`: fcntl.flock on Unix, msvcrt on Windows), so the kernel releases it when
its holder dies, even by SIGKILL: no stale lock to clear by hand. A lock file on a network file system may not
exclude a process on another machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from snakeweb.errors import SnakewebError
from snakeweb.store import HOLDER_NAME, LOCK_NAME, Store


class StoreLockedError(SnakewebError):
    """Another command is building the same store."""


def _holder(root: Path) -> str:
    try:
        holder = json.loads((root / HOLDER_NAME).read_text())
        started = time.strftime("%H:%M:%S", time.localtime(holder["started"]))
        return f"`{holder['command']}` (process {holder['pid']}, started {started})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another command"  # it has the lock but has not said who it is yet


@contextlib.contextmanager
def one_writer(root: str | Path, command: str) -> Iterator[None]:
    """Hold the store's writer lock while the body runs. Creates `root` when absent, and removes it again when
    the body leaves nothing else there (a refused first build leaves no folder behind). Raises StoreLockedError
    at once, naming the holder, when another process holds the lock, and SnakewebError when `root` is a file,
    the lock file cannot be made (a read-only folder) or the store's database file cannot be written (a read-only
    file in a writable folder: StoreReadOnlyError)."""
    from filelock import FileLock, Timeout

    root = Path(root).expanduser()
    Store(root).refuse_a_file()
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / LOCK_NAME, timeout=0)
        lock.acquire()
    except Timeout:
        raise StoreLockedError(f"The store {root} is being built by {_holder(root)}; wait for it to finish (or stop it), "
                               f"then run `{command}` again.") from None
    except OSError as exc:
        raise SnakewebError(f"Cannot write in the store folder {root} ({exc.strerror or exc}); give a folder you may "
                            "write to.") from exc
    try:
        if Store(root).exists():
            Store(root).require_writable()  # a read-only database file stops the command here, before its work
        holder = root / HOLDER_NAME
        with contextlib.suppress(OSError):  # only a courtesy for the message above
            partial = holder.with_name(f"{HOLDER_NAME}.{os.getpid()}")
            partial.write_text(json.dumps({"command": command, "pid": os.getpid(), "started": time.time()}))
            partial.replace(holder)
        yield
    finally:
        with contextlib.suppress(OSError):
            (root / HOLDER_NAME).unlink()
        # a folder this call made, which the body left empty, goes again; the lock file is unlinked while still
        # held so no other process can lock the old file after we let go (one that opened it just before keeps a
        # lock on nothing for a moment: a race only between a refused first build and a new one)
        leave_nothing = created and _only_the_lock(root)
        if leave_nothing:
            with contextlib.suppress(OSError):
                (root / LOCK_NAME).unlink()
        lock.release()
        if leave_nothing:
            with contextlib.suppress(OSError):
                root.rmdir()


def _only_the_lock(root: Path) -> bool:
    try:
        return set(os.listdir(root)) <= {LOCK_NAME}
    except OSError:
        return False

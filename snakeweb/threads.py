"""How many CPU cores this process may really use, and every thread pool sized from that one number.

`os.cpu_count()` counts the machine's cores, not this process's: a container limited by a cgroup CPU quota, or a
job pinned to some cores (`taskset`, Slurm, Kubernetes CPU manager), gets fewer. Inference pools sized from the
machine's count oversubscribe the cores: threads wait at every barrier for a sibling that is not running, and
a fast path collapses beside one other job. `available_cpus` reads what is really granted; `SNAKEWEB_THREADS`
overrides it (e.g. `SNAKEWEB_THREADS=1` for each of two jobs sharing two cores).

This module imports nothing heavy: torch and faiss are configured only if the caller already imported them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from snakeweb.errors import SnakewebError

log = logging.getLogger(__name__)

ENV_THREADS = "SNAKEWEB_THREADS"
_WARNED: set[str] = set()  # SNAKEWEB_THREADS values already said to be capped, once per process
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _own_cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """{controller: path} from /proc/self/cgroup ("" is the cgroup v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _candidate_dirs(mount: Path, own: str | None) -> list[Path]:
    """The process's cgroup folder under `mount` and its ancestors, then the mount itself (inside a container
    with its own cgroup namespace the mount is the process's cgroup, and /proc says "/")."""
    found = []
    if own and own != "/":
        folder = mount / own.lstrip("/")
        while folder != mount and mount in folder.parents:
            if folder.is_dir():
                found.append(folder)
            folder = folder.parent
    found.append(mount)
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """CPUs granted by the cgroup CPU quota, e.g. 1.5 for `cpu.max` = "150000 100000"; None when unlimited.

    Reads cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") and cgroup v1 `cpu.cfs_quota_us` /
    `cpu.cfs_period_us` (quota -1 = unlimited) in this process's cgroup (from `proc_cgroup`) and its ancestors
    under `root`; the smallest limit wins, as the kernel enforces every level. Files that are missing or
    unreadable count as no limit.
    """
    own = _own_cgroup_paths(proc_cgroup)
    limits: list[float] = []
    for folder in _candidate_dirs(root, own.get("")):  # v2: one unified hierarchy
        text = _read(folder / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and quota.isdigit() and period.strip().isdigit() and int(period) > 0:
                limits.append(int(quota) / int(period))
    for mount_name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):  # v1: the cpu controller's own mount
        mount = root / mount_name
        if not mount.is_dir():
            continue
        for folder in _candidate_dirs(mount, own.get("cpu")):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota and period and quota.lstrip("-").isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
                limits.append(int(quota) / int(period))
        break
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """Cores this process may be scheduled on (`os.sched_getaffinity`; `os.cpu_count()` where that is missing)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP, environ: Mapping[str, str] | None = None) -> int:
    """Whole cores this process may use (>= 1): `SNAKEWEB_THREADS` if set, else the smallest of the affinity
    mask, the cgroup quota rounded down (a 1.5-CPU quota gives 1: a second compute thread would be throttled
    mid-barrier) and `OMP_NUM_THREADS` when set. Raises SnakewebError for a `SNAKEWEB_THREADS` that is not a
    whole number >= 1."""
    environ = os.environ if environ is None else environ
    override = environ.get(ENV_THREADS, "").strip()
    cores = affinity_cpus()
    if override:
        # isdigit alone takes "²" and other digits int() refuses
        if not (override.isascii() and override.isdigit()) or int(override) < 1:
            raise SnakewebError(f"{ENV_THREADS}={override!r} is not a whole number of threads >= 1; set it to e.g. 2, or unset it.")
        if int(override) > cores:  # more threads than CPUs only makes them wait on each other (and 10**6 exhausts memory)
            if override not in _WARNED:
                _WARNED.add(override)
                log.warning("%s=%s is more than the %d CPU(s) this process may run on; using %d.", ENV_THREADS, override, cores, cores)
            return cores
        return int(override)
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota + 1e-9)))
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isascii() and omp.isdigit() and int(omp) >= 1:  # a scheduler's word (Ray sets it to an actor's CPUs; Slurm jobs often do)
        cores = min(cores, int(omp))
    return max(1, cores)


def inference_threads() -> int:
    """Threads for one model's compute (torch intra-op, OpenVINO INFERENCE_NUM_THREADS, faiss OpenMP)."""
    return available_cpus()


def decode_workers(threads: int | None = None) -> int:
    """Size of the embed stage's decode pool (Pillow decode + resize of the next batch while the model runs):
    half the available cores, at least 1 and at most 8. Pillow releases the GIL, so these threads take cores
    from the model: on 2 cores one decoder keeps the model fed (decoding a photo costs a fraction of embedding
    it) without a second thread competing with the model's own threads."""
    threads = available_cpus() if threads is None else threads
    return max(1, min(8, threads // 2))


def share_cores(environ: dict | None = None) -> None:
    """Before torch or faiss load OpenMP: idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE),
    and pools start at the cores granted (OMP_NUM_THREADS), unless the user set either. A spinning thread
    burns the core its sibling in another process needs: two torch embed stages on 2 cores fell from 70 to
    2 img/s each with libgomp's default spin, and kept 39 each with PASSIVE (-13% alone). Setting
    GOMP_SPINCOUNT also leaves the wait policy to the user. Called when snakeweb is imported."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if "OMP_NUM_THREADS" not in environ:
        try:
            cores = available_cpus(environ=environ)
        except SnakewebError:
            return  # said when a model loads (available_cpus raises again there)
        if cores < (os.cpu_count() or cores) or ENV_THREADS in environ:
            environ["OMP_NUM_THREADS"] = str(cores)


_applied: int | None = None


def configure(threads: int | None = None) -> int:
    """Size torch's and faiss's pools to `threads` (default `inference_threads()`) and return that number
    (also the OpenVINO INFERENCE_NUM_THREADS). Only modules already imported are touched; torch's inter-op
    pool can be sized once per process, before its first parallel work, so a later call leaves it be."""
    global _applied
    threads = inference_threads() if threads is None else max(1, int(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        try:
            if torch.get_num_interop_threads() != threads:
                torch.set_num_interop_threads(threads)
        except RuntimeError:  # already started: torch allows setting it once, before any inter-op work
            pass
    faiss = sys.modules.get("faiss")
    if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
        faiss.omp_set_num_threads(threads)
    if _applied != threads:
        log.info("threads: %d (affinity %d, cgroup quota %s, %s=%s)", threads, affinity_cpus(), cgroup_cpu_limit(),
                 ENV_THREADS, os.environ.get(ENV_THREADS, "unset"))
        _applied = threads
    return threads

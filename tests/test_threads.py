"""Thread pools sized from the cores this process may really use: cgroup v2 and v1 CPU quotas read from real
files (a cgroup tree written to a temporary folder), the affinity mask, and SNAKEWEB_THREADS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snakeweb.errors import SnakewebError
from snakeweb.threads import affinity_cpus, available_cpus, cgroup_cpu_limit, configure, decode_workers, share_cores


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_quota_in_a_container_namespace(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "150000 100000\n")
    proc = proc_file(tmp_path, "0::/\n")
    assert cgroup_cpu_limit(root, proc) == 1.5
    # 1.5 CPUs give one thread: a second would be throttled in the middle of every barrier
    assert available_cpus(root, proc, environ={}) == 1


def test_cgroup_v2_unlimited_and_missing_files(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    proc = proc_file(tmp_path, "0::/\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert available_cpus(root, proc, environ={}) == affinity_cpus()
    assert cgroup_cpu_limit(tmp_path / "nothing-here", tmp_path / "no-proc-file") is None


def test_cgroup_v2_the_smallest_limit_on_the_path_wins(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    write(root / "jobs" / "cpu.max", "300000 100000\n")  # a parent allows 3 CPUs
    write(root / "jobs" / "job7" / "cpu.max", "max 100000\n")  # the process's own cgroup sets no limit
    proc = proc_file(tmp_path, "0::/jobs/job7\n")
    assert cgroup_cpu_limit(root, proc) == 3.0
    write(root / "jobs" / "job7" / "cpu.max", "100000 50000\n")  # 2 CPUs in its own cgroup
    assert cgroup_cpu_limit(root, proc) == 2.0


def test_cgroup_v1_cfs_quota(tmp_path):
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct"
    write(cpu / "cpu.cfs_quota_us", "-1\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    proc = proc_file(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_limit(root, proc) is None  # -1: no quota
    write(cpu / "docker" / "abc" / "cpu.cfs_quota_us", "50000\n")
    write(cpu / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) == 0.5
    assert available_cpus(root, proc, environ={}) == 1  # never fewer than one thread


def test_environment_override_and_its_errors(tmp_path):
    proc = proc_file(tmp_path, "0::/\n")
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "100000 100000\n")
    cores = affinity_cpus()
    assert available_cpus(root, proc, environ={"SNAKEWEB_THREADS": str(cores)}) == cores  # the user's word beats the quota
    for bad in ("0", "-2", "two", "1.5", "²", "٣"):  # the last two: digits to str.isdigit, not to int()
        with pytest.raises(SnakewebError, match="SNAKEWEB_THREADS"):
            available_cpus(root, proc, environ={"SNAKEWEB_THREADS": bad})


def test_an_override_above_the_cpus_is_capped_and_said_once(tmp_path, caplog):
    proc, root = proc_file(tmp_path, "0::/\n"), tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    cores = affinity_cpus()
    for _ in range(2):  # 999999 threads made libgomp run out of memory before this cap
        assert available_cpus(root, proc, environ={"SNAKEWEB_THREADS": "999999"}) == cores
    said = [r.getMessage() for r in caplog.records if "999999" in r.getMessage()]
    assert len(said) == 1 and f"using {cores}" in said[0]


def test_omp_num_threads_caps_the_count(tmp_path):
    proc = proc_file(tmp_path, "0::/\n")
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    assert available_cpus(root, proc, environ={"OMP_NUM_THREADS": "1"}) == 1  # as Ray sets it for a 1-CPU actor
    assert available_cpus(root, proc, environ={"OMP_NUM_THREADS": "999"}) == affinity_cpus()
    assert available_cpus(root, proc, environ={"OMP_NUM_THREADS": "1", "SNAKEWEB_THREADS": "2"}) == 2


def test_this_machine():
    cores = available_cpus()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert cores <= len(os.sched_getaffinity(0))


def test_decode_pool_size():
    assert [decode_workers(n) for n in (1, 2, 3, 4, 16, 64)] == [1, 1, 1, 2, 8, 8]


def test_configure_sizes_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert configure(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SNAKEWEB_THREADS", "2")
        assert configure() == 2 and torch.get_num_threads() == 2
    finally:
        configure(before)


def test_share_cores_sets_openmp_defaults_only_when_unset():
    environ: dict[str, str] = {}
    share_cores(environ)
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE"
    environ = {"GOMP_SPINCOUNT": "300000"}  # the user chose how long threads spin: leave the policy alone
    share_cores(environ)
    assert "OMP_WAIT_POLICY" not in environ
    environ = {"OMP_WAIT_POLICY": "ACTIVE", "SNAKEWEB_THREADS": "1"}
    share_cores(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "SNAKEWEB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    environ = {"SNAKEWEB_THREADS": "many"}  # said when a model loads, not at import
    share_cores(environ)
    assert "OMP_NUM_THREADS" not in environ


def test_a_build_with_a_bad_thread_count_is_refused_before_any_work(tmp_path, photo_folder, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("SNAKEWEB_THREADS", "²")
    assert main(["build", "--store", str(tmp_path / "store"), "--images", str(photo_folder)]) == 2
    assert "SNAKEWEB_THREADS='²'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # a build used to ingest first and refuse only at the embed stage

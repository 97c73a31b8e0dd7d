"""What every result file records: the commit, the CPU model, the load."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD features that decide which kernels run (why a number moves between machines)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return sorted(have & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni"})
    except OSError:
        pass
    return []


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True)
        # Code that decides the numbers; result files and untracked files do not count.
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                                "runtimes", "bench", ":!bench/results"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _busy_jiffies() -> int:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


def _own_jiffies() -> int:
    """CPU time of this process, its reaped children and its live descendants."""
    me = os.getpid()
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))  # ppid; utime stime cutime cstime
    tree, total = {me}, 0
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    for pid in tree:
        total += stats.get(pid, (0, 0))[1]
    return total


_START: tuple[float, int, int] | None = None


def _start_watch() -> None:
    global _START
    import time

    _START = (time.monotonic(), _busy_jiffies(), _own_jiffies())


def load_record() -> dict:
    """The load while the bench ran: the share of the machine's CPU that other processes used
    (busy time of the whole machine minus this bench's own process tree, since machine_record()).
    The load average cannot say this: the bench's own threads push it to the core count."""
    import time

    out = {"load_average_after": round(os.getloadavg()[0], 2)}
    if _START is None:
        return out
    t0, busy0, own0 = _START
    wall = time.monotonic() - t0
    capacity = wall * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    others = max(0, (_busy_jiffies() - busy0) - (_own_jiffies() - own0))
    share = round(others / capacity, 3) if capacity > 0 else 0.0
    # 10 % of the machine to others: enough to move a 2-core number by more than its run-to-run noise.
    return {**out, "other_processes_cpu_share": share, "contended": share > 0.10}


def machine_record() -> dict:
    import torch

    _start_watch()
    return {
        "commit": commit(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_before": round(os.getloadavg()[0], 2),
    }

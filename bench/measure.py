"""Timing one command honestly on a shared machine: wall time, its CPU time
and peak RSS (wait4's rusage: the largest process of its tree, like GNU
time's %M), a daemon's RSS and CPU sampled from /proc, and how much CPU
*other* processes used meanwhile (system-wide busy time from /proc/stat
minus ours, minus kernel threads such as the loop device's workers), so a
disturbed sample can be repeated."""

import os
import resource
import subprocess
import tempfile
import threading
import time

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1


def busy_seconds() -> tuple:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK, (busy + idle + iowait) / CLK


def _stat(pid: int):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2 :].split()


def proc_cpu(pid: int, with_children: bool = True) -> float:
    """CPU seconds of a process (and of its reaped children)."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if with_children else 0)
    return ticks / CLK


def children(pid: int) -> list:
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def tree_cpu(pid: int) -> float:
    """CPU of a live process tree: each live process with its reaped
    children (a process reaped by a live one is counted by its parent)."""
    return sum(proc_cpu(p) for p in tree(pid))


def tree_rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/statm" % p) as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def kthreads_cpu() -> float:
    total = 0.0
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat(int(name))
            if f is not None and (f[1] == "2" or name == "2"):
                total += (int(f[11]) + int(f[12])) / CLK
    return total


class Sample:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def disturbed(self) -> bool:
        # Allow a little background (the registry's housekeeping, the
        # sampler itself): 0.2 s plus 5% of the machine during the run.
        return self.other_cpu > 0.2 + 0.05 * self.wall * NCPU


def timed(argv, env=None, log=None, daemons=(), accounted=(), timeout=None) -> Sample:
    """Runs `argv`; `daemons` are pids whose process trees are part of the
    tool (their RSS is sampled and added to the peak, their CPU is ours);
    `accounted` are pids whose CPU is ours but whose memory is not the
    tool's (a registry receiving a push)."""
    roots = list(daemons) + list(accounted)
    cpu0 = {p: tree_cpu(p) for p in roots}
    k0 = kthreads_cpu()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    b0, _ = busy_seconds()
    peak = [0]
    stop = threading.Event()

    def sample_rss():
        while not stop.is_set():
            peak[0] = max(peak[0], sum(tree_rss(p) for p in daemons))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample_rss, daemon=True) if daemons else None
    if sampler:
        sampler.start()
    # GNU time reports the peak RSS of the tool itself: a child forked
    # from this (large) Python process would count the Python heap it had
    # before exec.
    rss_file = tempfile.NamedTemporaryFile(prefix="imgb-bench-rss-", delete=False)
    rss_file.close()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + list(argv),
        env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    # A hung tool must not hang the benchmark: kill its process group.
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9)) if timeout else None
    if killer:
        killer.daemon = True
        killer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    except BaseException:
        os.killpg(proc.pid, 9)
        raise
    finally:
        if killer:
            killer.cancel()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if sampler:
        stop.set()
        sampler.join()
    b1, _ = busy_seconds()
    try:
        with open(rss_file.name) as f:
            tool_rss_kib = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        tool_rss_kib = 0
    os.unlink(rss_file.name)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    own = ru.ru_utime + ru.ru_stime + sum(tree_cpu(p) - c for p, c in cpu0.items())
    runner = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    other = (b1 - b0) - own - (kthreads_cpu() - k0) - runner
    return Sample(
        wall=wall,
        rc=proc.returncode,
        cpu=own,
        other_cpu=max(0.0, other),
        peak_bytes=tool_rss_kib * 1024 + peak[0],
    )


def wait_idle(busy_limit: float, max_wait: float) -> tuple:
    """Waits until the machine's busy fraction over half a second is below
    `busy_limit` (of all CPUs); gives up after `max_wait` seconds.
    Returns (seconds waited, idle reached)."""
    start = time.monotonic()
    while True:
        b0, t0 = busy_seconds()
        time.sleep(0.5)
        b1, t1 = busy_seconds()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < busy_limit:
            return time.monotonic() - start, True
        if time.monotonic() - start > max_wait:
            return time.monotonic() - start, False


def preread(path: str) -> None:
    """Reads every file once, so no tool pays for evicted pages."""
    subprocess.run("tar -cf - -C '%s' . | cat > /dev/null" % path, shell=True, check=True)

#!/usr/bin/env python3
"""The side-by-side build benchmark (issue #10). Run it through bench/run.sh,
which checks the tools and builds imgb first; see bench/README.md.

For each workload (bench/gen.py) and scenario it times imgb and each peer
that is installed, RUNS times each, interleaved (the tool order rotates every
run), on a dedicated journaled ext4 volume; every sample waits for an idle
machine, reads the context once beforehand, is repeated when other processes
used noticeable CPU during it, and its result is read back and checked
against the generator's expectation. Prints one markdown table per workload
and a summary with the targets; writes the same as JSON and markdown under
BENCH_DIR/results/.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gen  # noqa: E402
import image  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402
import tools  # noqa: E402

ROOT = os.path.dirname(HERE)
SCENARIOS = ("cold", "noop", "change", "nocache", "push", "export")


def env(name, default):
    return os.environ.get(name) or default


CFG = {
    "runs": int(env("RUNS", "5")),
    "scale": float(env("SCALE", "1")),
    "tools": env("TOOLS", "imgb,buildah,buildkit").split(","),
    "scenarios": env("SCENARIOS", ",".join(SCENARIOS)).split(","),
    "dir": env("BENCH_DIR", "/var/tmp/imgb-bench"),
    "vol_gb": int(env("VOL_GB", "40")),
    "idle_busy": float(env("IDLE_BUSY", "0.15")),
    "idle_max": float(env("IDLE_MAX", "10")),
    "retries": int(env("RETRIES", "2")),
    "verify": env("VERIFY", "first"),
    "floors": env("FLOORS", "1") != "0",
    # The floors are single CPU-bound pipelines: stable, and 40 s each.
    "floor_runs": int(env("FLOOR_RUNS", "1")),
    "timeout": float(env("TIMEOUT", "900")),
    "imgb": env("IMGB", os.path.join(ROOT, "target", "release", "imgb")),
}


class Workload:
    def __init__(self, name, wdir, expected):
        self.name, self.dir, self.expected = name, wdir, expected
        self.context = os.path.join(wdir, "context")
        self.dockerfile = os.path.join(self.context, "Dockerfile")
        self.tag = "bench/%s:latest" % name
        self.build_args = expected["build_args"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry on loopback via fixtures/registry/start.sh,
    deleted when stopped (or when this process dies)."""

    def __init__(self, vol, name):
        self.port = free_port()
        self.dir = os.path.join(vol, "registries", "%s-%d" % (name, self.port))
        self.proc = subprocess.Popen(
            ["bash", os.path.join(ROOT, "fixtures/registry/start.sh"), "plain", self.dir, str(self.port),
             "--watch-pid", str(os.getpid())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.host = "127.0.0.1:%d" % self.port
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("registry on %s did not start" % self.host)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def mount_volume():
    vol = os.path.join(CFG["dir"], "mnt")
    if os.path.ismount(vol):
        grow_volume(vol)
        return vol
    img = os.path.join(CFG["dir"], "vol.img")
    os.makedirs(vol, exist_ok=True)
    if not os.path.exists(img):
        subprocess.run(["truncate", "-s", "%dG" % CFG["vol_gb"], img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, vol], check=True)
    return vol


def empty_trash(vol, trim=False):
    """Deletes old state dirs (before the next sample's idle wait); `trim`
    gives the freed blocks back to the file holding the volume."""
    shutil.rmtree(os.path.join(vol, "trash"), ignore_errors=True)
    shutil.rmtree(os.path.join(vol, "scratch"), ignore_errors=True)
    subprocess.run(["sync"])
    if trim:
        subprocess.run(["fstrim", vol], stderr=subprocess.DEVNULL)


def grow_volume(vol):
    """An existing volume smaller than VOL_GB is grown (unmounted: online
    resizing is not permitted everywhere)."""
    img = os.path.join(CFG["dir"], "vol.img")
    want = CFG["vol_gb"] << 30
    with open("/proc/mounts") as f:
        if not any(l.split()[1] == vol for l in f):
            return
    dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", vol], stdout=subprocess.PIPE, text=True).stdout.strip()
    size = int(subprocess.run(["blockdev", "--getsize64", dev], stdout=subprocess.PIPE, text=True).stdout)
    if os.statvfs(vol).f_blocks * os.statvfs(vol).f_frsize >= want * 0.95 and size >= want:
        return
    subprocess.run(["umount", vol], check=True)
    subprocess.run(["truncate", "-s", str(max(want, os.path.getsize(img))), img], check=True)
    subprocess.run(["e2fsck", "-fy", img], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["resize2fs", img], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["mount", "-o", "loop", img, vol], check=True)


class Bench:
    def __init__(self, vol, log):
        self.vol, self.log = vol, log
        self.rows = []  # one dict per (workload, scenario, tool)
        self.base_diff_ids = []
        self.failures = []

    def say(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def sample(self, tool, wl, scen, run_no, expect):
        """One measured sample of `tool` (with repeats when disturbed);
        returns a dict or raises on failure."""
        scratch = os.path.join(self.vol, "scratch")
        os.makedirs(scratch, exist_ok=True)
        best = None
        for attempt in range(CFG["retries"] + 1):
            registry, ref, argv = None, None, None
            accounted = []
            if scen == "cold":
                tool.reset(wl)
            if scen == "change" and attempt > 0:
                path, digest = gen.change(wl.dir, "r%d-%s-%d" % (run_no, tool.name, attempt))
                expect["files"][path] = digest
            if scen == "push":
                registry = Registry(self.vol, "push")
                ref = "%s/fresh/%s:r%d" % (registry.host, wl.name, run_no)
                if hasattr(tool, "push_prepare"):
                    tool.push_prepare(wl, ref)
                argv = tool.push(wl, ref)
                accounted = [registry.proc.pid]
            elif scen == "export":
                dest = os.path.join(scratch, "%s-export.tar" % tool.name)
                if os.path.exists(dest):
                    os.unlink(dest)
                argv = tool.export(wl, dest)
            else:
                argv = tool.build(wl, no_cache=(scen == "nocache"))
            try:
                # Setup (a reset's pull and unpack) and the previous sample
                # leave dirty pages; written back during the timed command,
                # they would bill one tool for another's writes (an fsync
                # on ext4 waits for the whole journal commit).
                subprocess.run(["sync"])
                measure.preread(wl.context)
                waited, idle = measure.wait_idle(CFG["idle_busy"], CFG["idle_max"])
                self.log.write("$ %s\n" % " ".join(argv))
                self.log.flush()
                s = measure.timed(argv, env=tool.env(), log=self.log, daemons=tool.daemons, accounted=accounted,
                                  timeout=CFG["timeout"])
            except BaseException:
                if registry:
                    registry.stop()
                raise
            s.idle = idle
            s.attempts = attempt + 1
            s.pushed = None
            try:
                if s.rc != 0:
                    raise RuntimeError("exit status %d (log: %s)" % (s.rc, self.log.name))
                # Push and export outputs are read back every time; a build's
                # image is exported (untimed) for the first sample, or for
                # every sample with VERIFY=each.
                check = CFG["verify"] == "each" or (
                    CFG["verify"] == "first" and (run_no == 0 or scen in ("push", "export")))
                if scen == "push":
                    repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
                    _, s.pushed = image.registry_manifest(registry.host, repo, tag)
                    img = image.from_registry(registry.host, repo, tag) if check else None
                elif scen == "export":
                    img = image.from_archive(dest) if check else None
                else:
                    img = tool.snapshot(wl, scratch) if check else None
                if img is not None:
                    errors = image.verify(img, expect, self.base_diff_ids)
                    if errors:
                        raise RuntimeError("wrong image content:\n    " + "\n    ".join(errors))
            finally:
                if registry:
                    if hasattr(tool, "push_cleanup"):
                        tool.push_cleanup(wl, ref)
                    registry.stop()
            if best is None or s.other_cpu < best.other_cpu:
                best = s
            if not s.disturbed() or attempt == CFG["retries"]:
                break
            self.say("    %s: disturbed (%.2f s CPU by others), again" % (tool.name, s.other_cpu))
        return best

    def workload(self, name, tool_list):
        wdir = os.path.join(self.vol, "work", name)
        t = time.monotonic()
        expected = gen.generate(name, wdir, CFG["scale"])
        self.say("== %s: %d expected files (generated/checked in %.1f s)" % (name, len(expected["files"]), time.monotonic() - t))
        wl = Workload(name, wdir, expected)
        expect = json.loads(json.dumps(expected))
        results = {(s, t.name): [] for s in CFG["scenarios"] for t in tool_list}
        failed = set()
        for tool in tool_list:
            tool.reset(wl)
            if CFG["scenarios"][0] != "cold":
                tools.run(tool.build(wl), env=tool.env(), log=self.log)
        for scen in CFG["scenarios"]:
            empty_trash(self.vol)
            for run_no in range(CFG["runs"]):
                if scen == "change":
                    path, digest = gen.change(wl.dir, "r%d" % run_no)
                    expect["files"][path] = digest
                k = run_no % len(tool_list)
                for tool in tool_list[k:] + tool_list[:k]:
                    if (scen, tool.name) in failed:
                        continue
                    try:
                        s = self.sample(tool, wl, scen, run_no, expect)
                    except Exception as e:  # a failure is a result: report it, go on
                        failed.add((scen, tool.name))
                        msg = "%s %s %s: FAILED: %s" % (name, scen, tool.name, e)
                        self.failures.append(msg)
                        self.say("  " + msg)
                        continue
                    results[(scen, tool.name)].append(s)
                    self.say("  %-8s %-8s run %d: %7.3f s  %6.1f MB%s%s" % (
                        scen, tool.name, run_no + 1, s.wall, s.peak_bytes / 1e6,
                        "" if s.pushed is None else "  pushed %.1f MB" % (s.pushed / 1e6),
                        "" if s.idle else "  (machine not idle)"))
        for scen in CFG["scenarios"]:
            for tool in tool_list:
                ss = results[(scen, tool.name)]
                self.rows.append({
                    "workload": name, "scenario": scen, "tool": tool.name, "peer": tool.peer,
                    "failed": (scen, tool.name) in failed,
                    "median": statistics.median([s.wall for s in ss]) if ss else None,
                    "runs": len(ss), "repeats": sum(s.attempts - 1 for s in ss),
                    "disturbed": sum(1 for s in ss if s.disturbed()),
                    "peak_mb": max(s.peak_bytes for s in ss) / 1e6 if ss else None,
                    "pushed_mb": statistics.median([s.pushed for s in ss]) / 1e6 if ss and ss[0].pushed else None,
                    "note": tool.export_note if scen == "export" else "",
                })
        self.floors(wl)

    def floors(self, wl):
        if wl.name != "bigctx" or not CFG["floors"]:
            return
        cmds = [
            ("tar", "tar -cf - -C CTX . | cat > /dev/null"),
            ("tar | sha256sum", "tar -cf - -C CTX . | sha256sum > /dev/null"),
            ("tar | gzip -6", "tar -cf - -C CTX . | gzip -6 > /dev/null"),
            ("tar | pigz -6 -p 2", "tar -cf - -C CTX . | pigz -6 -p 2 > /dev/null"),
            ("tar | zstd -3 -T2", "tar -cf - -C CTX . | zstd -q -3 -T2 > /dev/null"),
        ]
        for label, cmd in cmds:
            times = []
            for _ in range(CFG["floor_runs"]):
                measure.preread(wl.context)
                measure.wait_idle(CFG["idle_busy"], CFG["idle_max"])
                s = measure.timed(["sh", "-c", cmd.replace("CTX", wl.context)])
                if s.rc != 0:
                    self.say("  floor %s failed (is it installed? bench/setup.sh)" % label)
                    break
                times.append(s.wall)
            if times:
                self.rows.append({"workload": wl.name, "scenario": "floor", "tool": label, "peer": False,
                                  "failed": False, "median": statistics.median(times), "runs": len(times),
                                  "repeats": 0, "disturbed": 0, "peak_mb": None, "pushed_mb": None, "note": ""})
                self.say("  floor %-20s %7.3f s" % (label, statistics.median(times)))


def machine():
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    with open("/etc/os-release") as f:
        osname = next((l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME")), "?")
    return "%d x %s, %.0f GiB, %s, kernel %s" % (os.cpu_count(), model, mem, osname, os.uname().release)


def versions(tool_names):
    out = []
    for name, argv in [("imgb", [CFG["imgb"], "--version"]), ("buildah", ["buildah", "--version"]),
                       ("buildkit", ["dockerd", "--version"])]:
        if name in tool_names:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out.append(r.stdout.strip().splitlines()[0] if r.stdout.strip() else name)
    return out


def main():
    workloads = sys.argv[1:] or list(gen.WORKLOADS)
    bad = [w for w in workloads if w not in gen.WORKLOADS]
    bad += [s for s in CFG["scenarios"] if s not in SCENARIOS]
    if bad:
        sys.exit("runner: unknown workload or scenario: %s (workloads %s; SCENARIOS from %s)" % (
            ", ".join(bad), ", ".join(gen.WORKLOADS), ",".join(SCENARIOS)))
    if os.geteuid() != 0:
        sys.exit("runner: run as root (loop mount, runc, dockerd)")
    vol = mount_volume()
    os.makedirs(os.path.join(vol, "results"), exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    log = open(os.path.join(vol, "results", "%s.log" % stamp), "w")
    started = time.monotonic()
    load0 = open("/proc/loadavg").read().split()[:3]
    bench = Bench(vol, log)
    base_reg = Registry(vol, "base")
    tool_list = []
    try:
        base_layout = os.path.join(vol, "base", "debian-layout")
        if not os.path.exists(os.path.join(base_layout, "index.json")):
            bench.say("building the Debian base fixture (first time: minutes) ...")
            subprocess.run(["bash", os.path.join(ROOT, "fixtures/images/debian/build.sh"), base_layout],
                           check=True, stdout=subprocess.DEVNULL)
        base_ref = "%s/bench/debian:bookworm" % base_reg.host
        bench.base_diff_ids = image.from_oci_dir(base_layout).config["rootfs"]["diff_ids"]
        tools.run(["skopeo", "copy", "-q", "--insecure-policy", "--dest-tls-verify=false",
                   "oci:%s:latest" % base_layout, "docker://" + base_ref], log=log)
        for name in CFG["tools"]:
            if name == "imgb":
                tool_list.append(tools.Imgb(vol, base_ref, log, CFG["imgb"], base_reg.host))
            elif name == "buildah" and shutil.which("buildah"):
                tool_list.append(tools.Buildah(vol, base_ref, log))
            elif name == "buildkit" and shutil.which("dockerd") and os.path.exists("/usr/bin/docker"):
                tool_list.append(tools.BuildKit(vol, base_ref, log))
            else:
                bench.say("runner: %s is not installed (bench/setup.sh); measuring without it" % name)
        for t in tool_list:
            t.start()
        for name in workloads:
            empty_trash(vol, trim=True)
            bench.workload(name, tool_list)
            # Keep what is finished even if a later workload is interrupted.
            with open(os.path.join(vol, "results", "%s.partial.json" % stamp), "w") as f:
                json.dump({"config": CFG, "rows": bench.rows, "failures": bench.failures}, f, indent=1)
    finally:
        for t in tool_list:
            t.stop()
        base_reg.stop()
        empty_trash(vol, trim=True)
    elapsed = time.monotonic() - started
    head = [
        "## Results %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "",
        "Machine: %s. Load average at start %s; run took %.1f min. RUNS=%d, SCALE=%g." % (
            machine(), " ".join(load0), elapsed / 60, CFG["runs"], CFG["scale"]),
        "Tools: %s." % "; ".join(versions([t.name for t in tool_list])),
    ]
    lines = head + report.tables(bench.rows, CFG["scenarios"]) + report.summary(bench.rows, CFG["scenarios"])
    if bench.failures:
        lines += ["", "Failures:", ""] + ["- " + f.replace("\n", " ") for f in bench.failures]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(vol, "results", "%s.md" % stamp), "w") as f:
        f.write(text)
    with open(os.path.join(vol, "results", "%s.json" % stamp), "w") as f:
        json.dump({"config": CFG, "rows": bench.rows, "failures": bench.failures, "elapsed_s": elapsed}, f, indent=1)
    bench.say("results: %s/results/%s.{md,json,log}" % (vol, stamp))
    sys.exit(1 if bench.failures else 0)


if __name__ == "__main__":
    main()

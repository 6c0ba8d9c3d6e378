"""The builders under test, each driven the way its users drive it, with
its state on the benchmark volume:

- imgb: `imgb --root DIR build`, `imgb push`, `imgb build -o type=oci`.
- Buildah: `buildah bud --runtime runc --network host --layers` with its own
  --root/--runroot, and its blob-info cache (normally the global
  /var/lib/containers/cache) bind-mounted from the volume in a private
  mount namespace, so no run can turn a "first push" into a blob mount.
- BuildKit: Debian's docker.io daemon (20.10, BuildKit inside), started here
  with `bridge: none`, `iptables: false`, its own data-root and socket;
  the client is `DOCKER_BUILDKIT=1 /usr/bin/docker build --network host`.
  Docker 20.10 has no OCI exporter: its export scenario is `docker save`.

Every method returns an argv (timed by the caller) or runs untimed setup.
"""

import json
import os
import shutil
import subprocess
import time

import image


def run(argv, env=None, log=None, check=True):
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log:
        log.write("$ %s\n%s" % (" ".join(argv), r.stdout))
        log.flush()
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(argv), r.returncode, r.stdout[-3000:]))
    return r


class Tool:
    name = ""
    peer = True
    export_note = "OCI archive"
    daemons: tuple = ()

    def __init__(self, vol, base_ref, log):
        self.vol, self.base_ref, self.log = vol, base_ref, log
        self.generation = 0

    def trash(self, path):
        """Moves a state dir aside (deleting big trees right before a timed
        run slows the file system down); the runner empties the trash
        between workloads."""
        if os.path.exists(path):
            self.generation += 1
            dest = os.path.join(self.vol, "trash", "%s-%d-%d" % (self.name, os.getpid(), time.monotonic_ns()))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(path, dest)

    def build_args(self, wl):
        out = []
        for k, v in wl.build_args.items():
            out += ["--build-arg", "%s=%s" % (k, v.replace("@BASE@", self.base_ref))]
        return out

    def env(self):
        return None

    def start(self):
        pass

    def stop(self):
        pass


class Imgb(Tool):
    name = "imgb"
    peer = False

    def __init__(self, vol, base_ref, log, binary, verify_registry):
        super().__init__(vol, base_ref, log)
        self.bin, self.verify_registry = binary, verify_registry
        self.root = os.path.join(vol, "state", "imgb")

    def reset(self, wl):
        self.trash(self.root)
        if wl.build_args:
            run([self.bin, "--root", self.root, "pull", self.base_ref], log=self.log)

    def build(self, wl, no_cache=False):
        return [self.bin, "--root", self.root, "build", "-q", "-t", wl.tag] + self.build_args(wl) + (
            ["--no-cache"] if no_cache else []
        ) + ["-f", wl.dockerfile, wl.context]

    def push(self, wl, ref):
        return [self.bin, "--root", self.root, "push", wl.tag, ref]

    def export(self, wl, dest):
        return self.build(wl) + ["-o", "type=oci,dest=%s" % dest]

    def snapshot(self, wl, scratch):
        # Push the tagged image from the store (what the timed build left
        # there) to a long-lived loopback registry, and read it back.
        self.generation += 1
        repo = "verify/imgb-%s" % wl.name
        tag = "g%d" % self.generation
        run([self.bin, "--root", self.root, "push", wl.tag, "%s/%s:%s" % (self.verify_registry, repo, tag)], log=self.log)
        return image.from_registry(self.verify_registry, repo, tag)


class Buildah(Tool):
    name = "buildah"

    def __init__(self, vol, base_ref, log):
        super().__init__(vol, base_ref, log)
        self.root = os.path.join(vol, "state", "buildah")
        self.runroot = "/run/imgb-bench-buildah"
        self.bic = os.path.join(vol, "state", "buildah-blobinfo")

    def cmd(self, *args):
        os.makedirs(self.bic, exist_ok=True)
        os.makedirs("/var/lib/containers/cache", exist_ok=True)
        return [
            "unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /var/lib/containers/cache && exec "$@"', self.bic,
            "buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver", "overlay",
        ] + list(args)

    def reset(self, wl):
        self.trash(self.root)
        self.trash(self.bic)
        shutil.rmtree(self.runroot, ignore_errors=True)
        if wl.build_args:
            run(self.cmd("pull", "-q", "--tls-verify=false", self.base_ref), log=self.log)

    def build(self, wl, no_cache=False):
        return self.cmd(
            "bud", "--runtime", "runc", "--network", "host", "--layers", "-q", "--tls-verify=false", "-t", wl.tag,
            *self.build_args(wl), *(["--no-cache"] if no_cache else []), "-f", wl.dockerfile, wl.context,
        )

    def push(self, wl, ref):
        return self.cmd("push", "-q", "--tls-verify=false", wl.tag, "docker://" + ref)

    def export(self, wl, dest):
        return self.cmd("push", "-q", wl.tag, "oci-archive:%s" % dest)

    def snapshot(self, wl, scratch):
        dest = os.path.join(scratch, "buildah-verify.tar")
        if os.path.exists(dest):
            os.unlink(dest)
        run(self.cmd("push", "-q", "--disable-compression", wl.tag, "oci-archive:%s" % dest), log=self.log)
        return image.from_archive(dest)


class BuildKit(Tool):
    name = "buildkit"
    export_note = "docker archive (`docker save`: Docker 20.10 has no OCI exporter)"
    SOCK = "/run/imgb-bench-docker.sock"

    def __init__(self, vol, base_ref, log):
        super().__init__(vol, base_ref, log)
        self.dir = os.path.join(vol, "state", "docker")
        self.proc = None

    def env(self):
        e = dict(os.environ)
        e.update(DOCKER_HOST="unix://" + self.SOCK, DOCKER_BUILDKIT="1")
        return e

    def docker(self, *args):
        return ["/usr/bin/docker"] + list(args)

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        cfg = {
            "bridge": "none", "iptables": False, "ip6tables": False, "ip-masq": False, "ip-forward": False,
            "data-root": os.path.join(self.dir, "root"), "exec-root": "/run/imgb-bench-docker",
            "pidfile": "/run/imgb-bench-docker.pid", "hosts": ["unix://" + self.SOCK],
            "storage-driver": "overlay2", "features": {"buildkit": True}, "log-level": "warn",
        }
        with open(os.path.join(self.dir, "daemon.json"), "w") as f:
            json.dump(cfg, f)
        logf = open(os.path.join(self.dir, "dockerd.log"), "a")
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", os.path.join(self.dir, "daemon.json")],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )
        for _ in range(300):
            if run(self.docker("version"), env=self.env(), check=False).returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited; see %s/dockerd.log" % self.dir)
            time.sleep(0.1)
        else:
            raise RuntimeError("dockerd did not answer; see %s/dockerd.log" % self.dir)
        self.daemons = (self.proc.pid,)
        run(self.docker("pull", "-q", self.base_ref), env=self.env(), log=self.log)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def reset(self, wl):
        # The base image stays in the daemon's store (pulled at start);
        # the build cache and the built images go.
        for tag in [wl.tag] + run(self.docker("images", "-q", "--filter", "reference=bench/*"), env=self.env()).stdout.split():
            run(self.docker("image", "rm", "-f", tag), env=self.env(), check=False)
        run(self.docker("builder", "prune", "-af"), env=self.env(), log=self.log)
        run(self.docker("image", "prune", "-f"), env=self.env(), log=self.log)

    def build(self, wl, no_cache=False):
        return self.docker(
            "build", "-q", "--network", "host", "-t", wl.tag, *self.build_args(wl),
            *(["--no-cache"] if no_cache else []), "-f", wl.dockerfile, wl.context,
        )

    def push_prepare(self, wl, ref):
        run(self.docker("tag", wl.tag, ref), env=self.env())

    def push_cleanup(self, wl, ref):
        run(self.docker("image", "rm", ref), env=self.env(), check=False)

    def push(self, wl, ref):
        return self.docker("push", "-q", ref)

    def export(self, wl, dest):
        return self.docker("save", "-o", dest, wl.tag)

    def snapshot(self, wl, scratch):
        dest = os.path.join(scratch, "docker-verify.tar")
        if os.path.exists(dest):
            os.unlink(dest)
        run(self.export(wl, dest), env=self.env(), log=self.log)
        return image.from_archive(dest)

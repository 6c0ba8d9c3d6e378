#!/usr/bin/env python3
"""Deterministic workload generators for bench/run.sh (same bytes every run).

    python3 bench/gen.py WORKLOAD OUT_DIR [--scale S]

writes OUT_DIR/context/ (Dockerfile, .dockerignore, files) and
OUT_DIR/expected.json: what a correct image contains (paths and sha256 of
the files the workload puts in, paths that must be absent, directories whose
file set must match exactly, config fields). `--scale` multiplies file counts
and CPU work (1 = the sizes the issue asks for; 0.05 for a quick check).

Content comes from SHAKE-256 (FIPS 202) of fixed seeds, so it is identical
on every machine and every Python 3. Text files are words from a fixed
vocabulary (compressible like source code), "random" files are SHAKE output
(incompressible), "binary" files are half SHAKE, half zeros.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

WORKLOADS = ("app", "bigctx", "multistage")

_WORDS = (
    "def class return import from self if else elif for while in not and or None True False "
    "try except finally with as yield lambda pass break continue raise assert global print len "
    "range list dict set tuple str int float bytes open read write close path os sys json http "
    "request response handler server client config settings logger debug info warning error "
    "value key item items index count total result data buffer stream layer image build cache "
    "store digest manifest registry push pull tag name version user group mode size time date "
    "( ) [ ] { } : , . = == != + - * / % < > <= >= += -= -> # ' \" _ __init__ __name__ x y z i j k n"
).split()
WORDS = [w.encode() for w in (_WORDS * (256 // len(_WORDS) + 1))[:256]]
NEWLINE_EVERY = 9


def shake(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n)


class Pools:
    """A text pool and slices of it: files are windows at seeded offsets."""

    def __init__(self, text_mb: int = 24):
        raw = shake("imgb-bench/text-pool", text_mb << 18)
        words = list(map(WORDS.__getitem__, raw))
        for i in range(NEWLINE_EVERY, len(words), NEWLINE_EVERY):
            words[i] = words[i] + b"\n"
        self.text = b" ".join(words)

    def text_file(self, seed: str, size: int) -> bytes:
        off = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
        off %= len(self.text) - size - 1
        return self.text[off : off + size]


def content(pools: Pools, kind: str, seed: str, size: int) -> bytes:
    if kind == "text":
        return pools.text_file(seed, size)
    if kind == "random":
        return shake(seed, size)
    half = size // 2
    return shake(seed, half) + bytes(size - half)


def write(ctx: str, rel: str, data: bytes, files: dict, dest_prefix: str | None) -> None:
    path = os.path.join(ctx, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if dest_prefix is not None:
        files[dest_prefix + rel] = hashlib.sha256(data).hexdigest()


# -- app ---------------------------------------------------------------------

INSTALL_DEPS = r'''"""Stands in for `pip install -r requirements.txt`: writes PER_PKG
modules per requirement (deterministic), like a dependency install does."""
import hashlib, os, sys

PER_PKG = @PER_PKG@
req, out = sys.argv[1], sys.argv[2]
pkgs = [l.split("==")[0] for l in open(req).read().split() if "==" in l]
for p in pkgs:
    for i in range(PER_PKG):
        d = os.path.join(out, p, "sub%d" % (i % 8))
        os.makedirs(d, exist_ok=True)
        s = hashlib.sha256(("%s/%d" % (p, i)).encode()).hexdigest()
        body = "# %s module %d\n" % (p, i) + "".join(
            "def f_%s_%d(x):\n    return x * %d + 0x%s\n" % (s[:8], j, j, s[j:j + 8])
            for j in range(20))
        with open(os.path.join(d, "m%d.py" % i), "w") as f:
            f.write(body)
'''

APP_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 APP_HOME=/srv/app
WORKDIR /srv/app
COPY requirements.txt install_deps.py /tmp/deps/
RUN python3 /tmp/deps/install_deps.py /tmp/deps/requirements.txt /opt/deps
COPY . .
LABEL org.opencontainers.image.title="imgb bench app" org.opencontainers.image.version="1.0"
EXPOSE 8000
USER 1000:1000
ENTRYPOINT ["python3", "-m", "app"]
CMD ["--port", "8000"]
"""

APP_LATE = "src/app/main.py"


def gen_app(ctx: str, scale: float, pools: Pools) -> dict:
    files: dict = {}
    n_src = max(20, int(3000 * scale))
    n_dep_modules = max(40, int(3000 * scale))
    n_node = max(50, int(8000 * scale))
    per_pkg = max(1, n_dep_modules // 40)
    write(ctx, "Dockerfile", APP_DOCKERFILE.encode(), files, "/srv/app/")
    ignore = b"node_modules\n.git\n**/*.pyc\n"
    write(ctx, ".dockerignore", ignore, files, "/srv/app/")
    req = "".join("pkg%02d==1.%d.0\n" % (i, i) for i in range(40)).encode()
    write(ctx, "requirements.txt", req, files, "/srv/app/")
    script = INSTALL_DEPS.replace("@PER_PKG@", str(per_pkg)).encode()
    write(ctx, "install_deps.py", script, files, "/srv/app/")
    for i in range(n_src):
        rel = "src/app/m%d/mod%d.py" % (i % 60, i)
        size = 500 + (i * 7919) % 15000
        write(ctx, rel, content(pools, "text", "app/" + rel, size), files, "/srv/app/")
    write(ctx, APP_LATE, late_content("app", "original"), files, "/srv/app/")
    for i in range(max(2, int(20 * scale))):
        rel = "static/img%d.bin" % i
        write(ctx, rel, content(pools, "random", "app/" + rel, 200_000), files, "/srv/app/")
    # Excluded by .dockerignore: a large dependency tree, a .git, *.pyc.
    for i in range(n_node):
        rel = "node_modules/p%d/lib/f%d.js" % (i % 400, i)
        kind = "random" if i % 5 == 0 else "text"
        write(ctx, rel, content(pools, kind, "app/" + rel, 4000 + (i * 104729) % 30000), {}, None)
    write(ctx, ".git/HEAD", b"ref: refs/heads/main\n", {}, None)
    write(ctx, "src/app/cache.pyc", b"\x00" * 64, {}, None)
    # The RUN's files: run the same script here.
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, os.path.join(ctx, "install_deps.py"), os.path.join(ctx, "requirements.txt"), tmp],
            check=True,
        )
        for root, _, names in os.walk(tmp):
            for n in names:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    files["/opt/deps/" + os.path.relpath(p, tmp)] = hashlib.sha256(f.read()).hexdigest()
    return {
        "files": files,
        "exact_under": ["/srv/app/", "/opt/deps/"],
        "absent_under": ["/srv/app/node_modules/", "/srv/app/.git/"],
        "config": {
            "WorkingDir": "/srv/app",
            "User": "1000:1000",
            "Entrypoint": ["python3", "-m", "app"],
            "Cmd": ["--port", "8000"],
            "ExposedPorts": ["8000/tcp"],
            "Env": ["PYTHONDONTWRITEBYTECODE=1", "APP_HOME=/srv/app"],
            "Labels": {"org.opencontainers.image.title": "imgb bench app"},
        },
        "late_file": [APP_LATE, "/srv/app/" + APP_LATE],
        "build_args": {"BASE": "@BASE@"},
    }


# -- bigctx ------------------------------------------------------------------

BIGCTX_DOCKERFILE = """\
FROM scratch
COPY . /data/
LABEL org.opencontainers.image.title="imgb bench bigctx"
"""
BIGCTX_LATE = "zz/late.txt"


def gen_bigctx(ctx: str, scale: float, pools: Pools) -> dict:
    files: dict = {}
    write(ctx, "Dockerfile", BIGCTX_DOCKERFILE.encode(), files, "/data/")
    n_small = max(100, int(19_800 * scale))
    n_large = max(4, int(200 * scale))
    kinds = ["text"] * 7 + ["random"] * 2 + ["binary"]
    for i in range(n_small):
        rel = "d%d/s%d/f%d.%s" % (i % 40, (i // 40) % 25, i, "txt" if i % 10 < 7 else "bin")
        size = 512 + (i * 2654435761) % 20480
        write(ctx, rel, content(pools, kinds[i % 10], "bigctx/" + rel, size), files, "/data/")
    for i in range(n_large):
        rel = "large/l%d.dat" % i
        kind = ("text", "random", "binary")[i % 3]
        write(ctx, rel, content(pools, kind, "bigctx/" + rel, 950_000), files, "/data/")
    write(ctx, BIGCTX_LATE, late_content("bigctx", "original"), files, "/data/")
    return {
        "files": files,
        "exact_under": ["/data/"],
        "absent_under": [],
        "config": {"Labels": {"org.opencontainers.image.title": "imgb bench bigctx"}},
        "late_file": [BIGCTX_LATE, "/data/" + BIGCTX_LATE],
        "build_args": {},
    }


# -- multistage --------------------------------------------------------------

CHAIN = (
    'python3 -c "import hashlib,functools;'
    "print(functools.reduce(lambda h,_:hashlib.sha256(h).digest(),range({n}),b'{seed}').hex())\""
)


def chain(seed: str, n: int) -> str:
    h = seed.encode()
    for _ in range(n):
        h = hashlib.sha256(h).digest()
    return h.hex() + "\n"


def gen_multistage(ctx: str, scale: float, pools: Pools) -> dict:
    n = max(20_000, int(2_000_000 * scale))
    stages = "".join(
        "FROM base AS {s}\nRUN {cmd} > /work/{s}.txt\n".format(s=s, cmd=CHAIN.format(n=n, seed=s)) for s in "abc"
    )
    dockerfile = (
        "ARG BASE\nFROM ${BASE} AS base\nWORKDIR /work\n"
        + stages
        + "FROM base AS unused\nRUN {cmd} > /work/unused.txt\n".format(cmd=CHAIN.format(n=n * 4, seed="unused"))
        + "FROM ${BASE}\n"
        + "".join("COPY --from={s} /work/{s}.txt /out/\n".format(s=s) for s in "abc")
        + "COPY config.txt /etc/bench/\n"
        + 'CMD ["cat", "/out/a.txt"]\n'
    )
    files: dict = {}
    write(ctx, "Dockerfile", dockerfile.encode(), {}, None)
    write(ctx, "config.txt", late_content("multistage", "original"), files, "/etc/bench/")
    for s in "abc":
        files["/out/%s.txt" % s] = hashlib.sha256(chain(s, n).encode()).hexdigest()
    return {
        "files": files,
        "exact_under": ["/out/", "/etc/bench/"],
        "absent_under": ["/work/"],
        "config": {"Cmd": ["cat", "/out/a.txt"]},
        "late_file": ["config.txt", "/etc/bench/config.txt"],
        "build_args": {"BASE": "@BASE@"},
    }


def late_content(workload: str, token: str) -> bytes:
    """The late-copied file's content for a change token (deterministic)."""
    return ("# %s late-copied file, version %s\nvalue = %r\n" % (workload, token, token)).encode()


def change(out_dir: str, token: str) -> tuple:
    """Rewrites the workload's late-copied file; returns (image path, sha256)."""
    with open(os.path.join(out_dir, "expected.json")) as f:
        exp = json.load(f)
    rel, dest = exp["late_file"]
    data = late_content(exp["workload"], token)
    with open(os.path.join(out_dir, "context", rel), "wb") as f:
        f.write(data)
    return dest, hashlib.sha256(data).hexdigest()


def generate(workload: str, out_dir: str, scale: float) -> dict:
    """Generates into OUT_DIR unless a complete generation with the same
    parameters is there; returns the expectation."""
    stamp = os.path.join(out_dir, ".complete")
    params = json.dumps({"workload": workload, "scale": scale, "gen": 1})
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == params:
                change(out_dir, "original")
                with open(os.path.join(out_dir, "expected.json")) as f:
                    return json.load(f)
    shutil.rmtree(out_dir, ignore_errors=True)
    ctx = os.path.join(out_dir, "context")
    os.makedirs(ctx)
    os.umask(0o022)
    pools = Pools(4 if scale < 0.2 else 24)
    exp = {"app": gen_app, "bigctx": gen_bigctx, "multistage": gen_multistage}[workload](ctx, scale, pools)
    exp["workload"] = workload
    exp["scale"] = scale
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(exp, f, indent=0, sort_keys=True)
    with open(stamp, "w") as f:
        f.write(params)
    return exp


def main() -> None:
    args = sys.argv[1:]
    scale = 1.0
    if "--scale" in args:
        i = args.index("--scale")
        scale = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2 or args[0] not in WORKLOADS:
        sys.exit("usage: gen.py {%s} OUT_DIR [--scale S]" % ",".join(WORKLOADS))
    exp = generate(args[0], args[1], scale)
    print("%s: %d expected files" % (args[0], len(exp["files"])))


if __name__ == "__main__":
    main()

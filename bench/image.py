"""Reads a built image back (OCI archive, OCI layout dir, docker archive or a
registry) and checks it against a workload's expected.json, so a fast wrong
answer cannot win. Layers are applied in order with OCI whiteouts; only the
files under the expectation's directories are hashed."""

import gzip
import hashlib
import json
import subprocess
import tarfile
import urllib.request

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class Image:
    """An image's config and its layers as openers of byte streams."""

    def __init__(self, config: dict, layers: list):
        self.config = config
        self.layers = layers  # callables returning a readable (maybe compressed) stream


def _decompressed(stream):
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)
    if head == b"\x28\xb5\x2f\xfd":
        proc = subprocess.Popen(["zstd", "-dc"], stdin=stream, stdout=subprocess.PIPE)
        return proc.stdout
    return stream


class _Peekable:
    """Gives any stream a `peek` so the compression can be sniffed."""

    def __init__(self, raw):
        self.raw = raw
        self.buf = b""

    def peek(self, n):
        while len(self.buf) < n:
            chunk = self.raw.read(n - len(self.buf))
            if not chunk:
                break
            self.buf += chunk
        return self.buf

    def read(self, n=-1):
        if self.buf:
            if n is None or n < 0:
                out, self.buf = self.buf + self.raw.read(), b""
                return out
            out, self.buf = self.buf[:n], self.buf[n:]
            if len(out) < n:
                out += self.raw.read(n - len(out))
            return out
        return self.raw.read(n)

    def fileno(self):
        raise OSError("no fd")


def _pick_manifest(index: dict, read_json) -> dict:
    for m in index.get("manifests", []):
        mt = m.get("mediaType", "")
        if "index" in mt or "manifest.list" in mt:
            return _pick_manifest(read_json(m["digest"]), read_json)
        plat = m.get("platform")
        if plat and plat.get("architecture") not in (None, "amd64") and plat.get("os") != "unknown":
            continue
        return read_json(m["digest"])
    raise ValueError("no manifest in index")


def _blob_name(digest: str) -> str:
    algo, hexd = digest.split(":", 1)
    return "blobs/%s/%s" % (algo, hexd)


def from_oci_archive(path: str) -> Image:
    tf = tarfile.open(path, "r:")
    members = {m.name.lstrip("./"): m for m in tf.getmembers()}

    def read(name):
        return tf.extractfile(members[name]).read()

    def read_json(digest):
        return json.loads(read(_blob_name(digest)))

    manifest = _pick_manifest(json.loads(read("index.json")), read_json)
    config = read_json(manifest["config"]["digest"])
    layers = [(lambda d=layer["digest"]: tf.extractfile(members[_blob_name(d)])) for layer in manifest["layers"]]
    return Image(config, layers)


def from_oci_dir(path: str) -> Image:
    def read_json(digest):
        with open("%s/%s" % (path, _blob_name(digest))) as f:
            return json.load(f)

    with open(path + "/index.json") as f:
        manifest = _pick_manifest(json.load(f), read_json)
    config = read_json(manifest["config"]["digest"])
    layers = [(lambda d=layer["digest"]: open("%s/%s" % (path, _blob_name(d)), "rb")) for layer in manifest["layers"]]
    return Image(config, layers)


def from_docker_archive(path: str) -> Image:
    tf = tarfile.open(path, "r:")
    members = {m.name.lstrip("./"): m for m in tf.getmembers()}
    manifest = json.loads(tf.extractfile(members["manifest.json"]).read())[0]
    config = json.loads(tf.extractfile(members[manifest["Config"]]).read())
    layers = [(lambda n=name: tf.extractfile(members[n])) for name in manifest["Layers"]]
    return Image(config, layers)


def from_archive(path: str) -> Image:
    with tarfile.open(path, "r:") as tf:
        names = {m.name.lstrip("./") for m in tf.getmembers()}
    return from_oci_archive(path) if "index.json" in names else from_docker_archive(path)


def registry_manifest(host: str, repo: str, ref: str) -> tuple:
    """(manifest, pushed size = config + layers) of an image in a registry."""

    def get(kind, what, accept=None):
        req = urllib.request.Request("http://%s/v2/%s/%s/%s" % (host, repo, kind, what))
        if accept:
            req.add_header("Accept", accept)
        return urllib.request.urlopen(req, timeout=60)

    def read_json(digest):
        with get("manifests", digest, MANIFEST_TYPES) as r:
            return json.load(r)

    with get("manifests", ref, MANIFEST_TYPES) as r:
        top = json.load(r)
    manifest = top if "layers" in top else _pick_manifest(top, read_json)
    size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    return manifest, size


def from_registry(host: str, repo: str, ref: str) -> Image:
    manifest, _ = registry_manifest(host, repo, ref)

    def blob(digest):
        return urllib.request.urlopen("http://%s/v2/%s/blobs/%s" % (host, repo, digest), timeout=300)

    with blob(manifest["config"]["digest"]) as r:
        config = json.load(r)
    return Image(config, [(lambda d=layer["digest"]: blob(d)) for layer in manifest["layers"]])


def _norm(name: str) -> str:
    name = name.lstrip("./").rstrip("/")
    return "/" + name


def apply_layers(image: Image, hashed_under: list) -> dict:
    """The final file system as {path: ("f", sha256|None) | ("d",) | ("l", target)}."""
    fs: dict = {}
    for opener in image.layers:
        with opener() as raw:
            stream = _decompressed(_Peekable(raw))
            adds = []
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    path = _norm(m.name)
                    parent, _, base = path.rpartition("/")
                    if base == ".wh..wh..opq":
                        prefix = parent + "/"
                        for p in [p for p in fs if p.startswith(prefix)]:
                            del fs[p]
                        continue
                    if base.startswith(".wh."):
                        gone = parent + "/" + base[4:]
                        for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                            del fs[p]
                        continue
                    if m.isdir():
                        adds.append((path, ("d",)))
                    elif m.issym():
                        adds.append((path, ("l", m.linkname)))
                    elif m.islnk():
                        adds.append((path, ("h", _norm(m.linkname))))
                    elif m.isfile():
                        digest = None
                        if any((path + "/").startswith(p) or path.startswith(p) for p in hashed_under):
                            f = tf.extractfile(m)
                            h = hashlib.sha256()
                            while True:
                                chunk = f.read(1 << 20)
                                if not chunk:
                                    break
                                h.update(chunk)
                            digest = h.hexdigest()
                        adds.append((path, ("f", digest)))
                    else:
                        adds.append((path, ("o",)))
            if hasattr(stream, "close"):
                stream.close()
        for path, entry in adds:
            if entry[0] == "h":
                target = fs.get(entry[1]) or dict(adds).get(entry[1])
                entry = target if target else ("f", None)
            fs[path] = entry
    return fs


def skip_layers(image: Image, diff_ids: list) -> None:
    """Leaves out the image's leading layers when they are these (the base
    image's): nothing under test is in them, and reading them back costs
    more than the check."""
    mine = (image.config.get("rootfs") or {}).get("diff_ids") or []
    n = 0
    while n < len(diff_ids) and n < len(mine) and mine[n] == diff_ids[n] and n < len(image.layers):
        n += 1
    image.layers = image.layers[n:]


def verify(image: Image, expected: dict, base_diff_ids: list = ()) -> list:
    """Differences between the image and the expectation (empty: correct)."""
    errors = []
    skip_layers(image, list(base_diff_ids))
    hashed = list(expected["exact_under"])
    hashed += sorted({p.rpartition("/")[0] + "/" for p in expected["files"] if not any(p.startswith(h) for h in hashed)})
    fs = apply_layers(image, hashed)
    for path, digest in expected["files"].items():
        got = fs.get(path)
        if got is None:
            errors.append("missing %s" % path)
        elif got[0] != "f" or got[1] != digest:
            errors.append("wrong content in %s" % path)
    for prefix in expected["exact_under"]:
        extra = [p for p, e in fs.items() if p.startswith(prefix) and e[0] == "f" and p not in expected["files"]]
        errors += ["unexpected file %s" % p for p in sorted(extra)[:5]]
    for prefix in expected["absent_under"]:
        present = [p for p in fs if p.startswith(prefix) or p + "/" == prefix]
        errors += ["should be absent: %s" % p for p in sorted(present)[:5]]
    cfg = image.config.get("config") or {}
    for key, want in expected["config"].items():
        got = cfg.get(key)
        if key == "Labels":
            for k, v in want.items():
                if (got or {}).get(k) != v:
                    errors.append("label %s is %r, want %r" % (k, (got or {}).get(k), v))
        elif key == "Env":
            errors += ["missing env %s" % e for e in want if e not in (got or [])]
        elif key == "ExposedPorts":
            errors += ["missing exposed port %s" % p for p in want if p not in (got or {})]
        elif got != want:
            errors.append("config %s is %r, want %r" % (key, got, want))
    if len(errors) > 12:
        errors = errors[:12] + ["... and %d more" % (len(errors) - 12)]
    return errors


def _selftest() -> None:
    """`python3 bench/image.py`: the checker accepts a right image and
    rejects wrong ones (a wrong file, a missing one, an extra one, an
    ignored directory that leaked in, a wrong config), with whiteouts and
    opaque directories applied."""
    import io
    import os
    import tempfile

    def layer(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tf.addfile(info)
                else:
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def put(root, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        os.makedirs(root + "/blobs/sha256", exist_ok=True)
        with open(root + "/" + _blob_name(digest), "wb") as f:
            f.write(data)
        return {"digest": digest, "size": len(data)}

    def build(root, layers, cmd):
        descs = [put(root, lay) for lay in layers]
        config = {"config": {"Cmd": cmd}, "rootfs": {"type": "layers", "diff_ids": []}}
        m = {"schemaVersion": 2, "config": put(root, json.dumps(config).encode()), "layers": descs}
        with open(root + "/index.json", "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [put(root, json.dumps(m).encode())]}, f)
        return from_oci_dir(root)

    lower = layer([("app/", None), ("app/a", b"A"), ("app/old", b"x"), ("app/d/", None), ("app/d/gone", b"y")])
    upper = layer([("app/.wh.old", b""), ("app/d/", None), ("app/d/.wh..wh..opq", b""), ("app/d/new", b"N")])
    want = {
        "files": {"/app/a": hashlib.sha256(b"A").hexdigest(), "/app/d/new": hashlib.sha256(b"N").hexdigest()},
        "exact_under": ["/app/"],
        "absent_under": ["/app/node_modules/"],
        "config": {"Cmd": ["run"]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        assert verify(build(tmp + "/ok", [lower, upper], ["run"]), want) == []
        wrong = layer([("app/a", b"B")])
        assert verify(build(tmp + "/w1", [lower, upper, wrong], ["run"]), want) == ["wrong content in /app/a"]
        assert "missing /app/d/new" in verify(build(tmp + "/w2", [lower], ["run"]), want)
        leak = layer([("app/node_modules/", None), ("app/node_modules/x.js", b"x")])
        errs = verify(build(tmp + "/w3", [lower, upper, leak], ["run"]), want)
        assert "unexpected file /app/node_modules/x.js" in errs and any("absent" in e for e in errs), errs
        errs = verify(build(tmp + "/w4", [lower, upper], ["other"]), want)
        assert errs == ["config Cmd is ['other'], want ['run']"], errs
    print("image.py: checker self-test passed")


if __name__ == "__main__":
    _selftest()

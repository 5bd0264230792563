#!/usr/bin/env python3
"""Writes an OCI image archive (an image layout in one tar) from files of this machine, with no
base image and no registry: what `ctr images import` takes.

    oci-image.py --out IMAGE.tar --name REF [--name REF...] --entrypoint PATH [--user UID:GID]
                 [--bin FILE...] [--with-libraries] [--strip-debug] [--static FILE:PATH...]
                 [--link PATH:TARGET...]

Two layers: a base (the shared libraries the binaries load, found with ldd and copied with the
symlinks that lead to them, plus /etc/passwd, /etc/group and /tmp) and the app (each --bin as
/usr/local/bin/NAME, each --static FILE:PATH at PATH, each --link PATH:TARGET a symlink).
Images whose binaries load the same libraries share their base layer. The output depends only on
the files' contents: entries are sorted, owned by root, dated at the epoch, and the JSON
documents have sorted keys, so building the same binaries twice gives the same digests (and
containerd keeps the blobs it has).
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

EPOCH = 0
NONROOT = 65532
# Debian's bundle of root certificates (package ca-certificates).
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


class Layer:
    """The entries of one layer tar, keyed by their path inside the image (no leading /)."""

    def __init__(self):
        self.entries = {}

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = ("dir", 0o755, None)

    def dir(self, path, mode):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("dir", mode, None)

    def data(self, path, mode, content):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("file", mode, content)

    def file(self, path, mode, source):
        with open(source, "rb") as f:
            self.data(path, mode, f.read())

    def symlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("symlink", 0o777, target)

    def host_path(self, host):
        """Copies a host file to the same path, and every symlink met on the way to it (in its
        folders or the file itself) as the same symlink, so that the image resolves the path
        the way this machine does (Debian's /lib -> usr/lib, /lib64/ld-linux... chains)."""
        host = os.path.abspath(host)
        seen = 0
        while True:
            seen += 1
            if seen > 40:
                raise SystemExit(f"oci-image: too many symlinks resolving {host}")
            parts = host.strip("/").split("/")
            resolved = False
            for i in range(1, len(parts) + 1):
                prefix = "/" + "/".join(parts[:i])
                if os.path.islink(prefix):
                    target = os.readlink(prefix)
                    self.symlink(prefix, target)
                    absolute = os.path.normpath(os.path.join(os.path.dirname(prefix), target))
                    host = os.path.join(absolute, *parts[i:])
                    resolved = True
                    break
            if not resolved:
                break
        mode = os.stat(host).st_mode & 0o777
        self.file(host, mode, host)

    def tar(self):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, mode, payload = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = EPOCH
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = mode
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = payload
                    tar.addfile(info)
                else:
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        return out.getvalue()


def libraries(binaries):
    """The shared objects the binaries load, as ldd names them (the dynamic loader included)."""
    found = set()
    for binary in binaries:
        result = subprocess.run(["ldd", binary], capture_output=True, text=True)
        if result.returncode != 0:
            if "not a dynamic executable" in result.stdout + result.stderr:
                continue
            raise SystemExit(f"oci-image: ldd {binary} failed: {result.stderr.strip()}")
        for line in result.stdout.splitlines():
            if "not found" in line:
                raise SystemExit(f"oci-image: {binary} needs a library this machine lacks: {line.strip()}")
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(match.group(1))
    return sorted(found)


def strip_debug(path):
    """A copy of the binary without its debug sections (symbols stay, so backtraces keep
    their function names); the same code, a fraction of the bytes."""
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        name = tmp.name
    try:
        subprocess.run(["objcopy", "--strip-debug", path, name], check=True)
        with open(name, "rb") as f:
            return f.read()
    finally:
        os.unlink(name)


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the OCI archive to write")
    parser.add_argument("--name", action="append", required=True, help="image reference (repeatable)")
    parser.add_argument("--entrypoint", required=True, help="path of the entrypoint inside the image")
    parser.add_argument("--user", default=f"{NONROOT}:{NONROOT}", help="UID:GID the image runs as")
    parser.add_argument("--bin", action="append", default=[], help="a binary, put in /usr/local/bin")
    parser.add_argument("--static", action="append", default=[], help="FILE:PATH, a file put at PATH")
    parser.add_argument("--link", action="append", default=[], help="PATH:TARGET, a symlink at PATH")
    parser.add_argument("--with-libraries", action="store_true", help="add the libraries the binaries load")
    parser.add_argument("--strip-debug", action="store_true", help="drop the binaries' debug sections")
    args = parser.parse_args()

    base = Layer()
    uid, _, gid = args.user.partition(":")
    base.data("etc/passwd", 0o644, f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n".encode())
    base.data("etc/group", 0o644, f"root:x:0:\nnonroot:x:{NONROOT}:\n".encode())
    base.dir("tmp", 0o1777)
    # The root certificates the Dockerfiles' base image carries (ca-certificates): TLS clients
    # (the object store's, Kafka's over SASL_SSL) will not start without a trust store.
    if os.path.exists(CA_BUNDLE):
        base.host_path(CA_BUNDLE)
    base.dir("home/nonroot", 0o755)
    if args.with_libraries:
        for library in libraries(args.bin):
            base.host_path(library)

    app = Layer()
    for binary in args.bin:
        target = "usr/local/bin/" + os.path.basename(binary)
        if args.strip_debug:
            app.data(target, 0o755, strip_debug(binary))
        else:
            app.file(target, 0o755, binary)
    for spec in args.static:
        source, _, path = spec.partition(":")
        app.file(path, os.stat(source).st_mode & 0o777, source)
    for spec in args.link:
        path, _, target = spec.partition(":")
        app.symlink(path, target)

    blobs = {}
    diff_ids = []
    layers = []
    for layer in (base, app):
        data = layer.tar()
        digest = blob(data)
        blobs[digest] = data
        diff_ids.append(digest)
        layers.append({"mediaType": MEDIA_LAYER, "digest": digest, "size": len(data)})

    config = canonical({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": f"{uid}:{gid or uid}",
            "Entrypoint": [args.entrypoint],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": "e2e/stack/images/oci-image.py: libraries and users"},
            {"created": "1970-01-01T00:00:00Z", "created_by": "e2e/stack/images/oci-image.py: binaries"},
        ],
    })
    config_digest = blob(config)
    blobs[config_digest] = config
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layers,
    })
    manifest_digest = blob(manifest)
    blobs[manifest_digest] = manifest
    index = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }
            for name in sorted(set(args.name))
        ],
    })

    archive = Layer()
    archive.data("oci-layout", 0o644, canonical({"imageLayoutVersion": "1.0.0"}))
    archive.data("index.json", 0o644, index)
    for digest, data in blobs.items():
        archive.data("blobs/sha256/" + digest.split(":", 1)[1], 0o644, data)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive.tar())
    os.replace(tmp, args.out)
    print(manifest_digest)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The local node's sandbox image, made without a registry or a container build.

    python3 hack/nodeimage.py BIN_DIR   # BIN_DIR/{pause,netcheck} -> BIN_DIR/node-tools.oci.tar

One uncompressed layer holding /pause (the sandbox process, the entrypoint) and /netcheck (a
TCP probe for tests), as an OCI image layout in a tar that `ctr images import` reads. The
bytes are reproducible (fixed times and owners), so the image's name carries its digest and a
rebuild of the same binaries gives the same image. Standard library only: hack/build-node runs
it with the machine's python3.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
import tarfile
from pathlib import Path

ARCHIVE = "node-tools.oci.tar"
REPOSITORY = "localhost/arqfleet/node-tools"
FILES = ("pause", "netcheck")
# The node's pods run as this user unless they say otherwise: never root by default.
USER = "65532:65532"


def _tar(entries: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar of `name -> (content, mode)`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            content, mode = entries[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _blob(data: bytes) -> tuple[str, dict[str, object]]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, {"digest": digest, "size": len(data)}


def build(bin_dir: Path) -> str:
    """Write BIN_DIR/node-tools.oci.tar and return the image's reference."""
    architecture = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    layer = _tar({name: ((bin_dir / name).read_bytes(), 0o755) for name in FILES})
    layer_digest, layer_desc = _blob(layer)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": USER, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    config_digest, config_desc = _blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_desc = _blob(manifest)
    tag = manifest_digest.removeprefix("sha256:")[:12]
    reference = f"{REPOSITORY}:{tag}"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **manifest_desc,
                    "platform": {"architecture": architecture, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    blobs = {
        f"blobs/sha256/{digest.removeprefix('sha256:')}": (data, 0o644)
        for digest, data in (
            (layer_digest, layer),
            (config_digest, config),
            (manifest_digest, manifest),
        )
    }
    archive = _tar(
        {
            "oci-layout": (b'{"imageLayoutVersion":"1.0.0"}', 0o644),
            "index.json": (index, 0o644),
            **blobs,
        }
    )
    partial = bin_dir / f"{ARCHIVE}.partial"
    partial.write_bytes(archive)
    partial.replace(bin_dir / ARCHIVE)
    return reference


def reference(bin_dir: Path) -> str:
    """The name the archive in BIN_DIR gives its image (from its index.json)."""
    with tarfile.open(bin_dir / ARCHIVE) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    name: str = index["manifests"][0]["annotations"]["io.containerd.image.name"]
    return name


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))

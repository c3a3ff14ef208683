#!/usr/bin/env python3
"""Write a multi-platform OCI image layout: an image index over linux/amd64 and linux/arm64.

The demo and the e2e suite push it to a berth registry to show that indexes,
their child manifests and blobs survive a round trip. The amd64 variant
contains Debian's static busybox, so a pod on this machine can run it. The
arm64 variant contains only a text file, because no arm64 binary is built here.
Output is reproducible: timestamps are zero, so the same inputs give the same
digests.

usage: multiplatform.py --output DIR --tag TAG [--busybox /bin/busybox]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import pathlib
import tarfile

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _write_blob(root: pathlib.Path, data: bytes, media_type: str, **extra: object) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def _layer(files: dict[str, tuple[bytes, int]]) -> tuple[bytes, str]:
    """Return (gzipped tar, diff ID) for files given as {path: (content, mode)}."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory in sorted({str(pathlib.PurePosixPath(p).parent) for p in files} - {"/", "."}):
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(info)
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), mode, 0
            archive.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    compressed = gzip.compress(tar_bytes, mtime=0)
    return compressed, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _image(root: pathlib.Path, architecture: str, files: dict[str, tuple[bytes, int]], entrypoint: list[str]) -> dict[str, object]:
    layer, diff_id = _layer(files)
    layer_descriptor = _write_blob(root, layer, LAYER)
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65532:65532"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_descriptor = _write_blob(root, json.dumps(config, sort_keys=True).encode(), CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_descriptor, "layers": [layer_descriptor]}
    return _write_blob(root, json.dumps(manifest, sort_keys=True).encode(), MANIFEST, platform={"architecture": architecture, "os": "linux"})


def build(output: pathlib.Path, tag: str, busybox: pathlib.Path) -> str:
    """Write the layout and return the digest of the image index."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    amd64 = _image(output, "amd64", {"/bin/busybox": (busybox.read_bytes(), 0o755)}, ["/bin/busybox", "echo", "hello from a berth registry"])
    arm64 = _image(output, "arm64", {"/README": (b"The arm64 variant of berth's demo image holds no binary.\n", 0o644)}, ["/bin/busybox", "cat", "/README"])
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [amd64, arm64]}
    descriptor = _write_blob(output, json.dumps(index, sort_keys=True).encode(), INDEX, annotations={"org.opencontainers.image.ref.name": tag})
    (output / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor]}, sort_keys=True))
    return str(descriptor["digest"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, required=True, help="directory of the OCI layout to write")
    parser.add_argument("--tag", required=True, help="tag recorded in the layout's index.json")
    parser.add_argument("--busybox", type=pathlib.Path, default=pathlib.Path("/bin/busybox"), help="static busybox binary for the amd64 variant")
    args = parser.parse_args()
    print(build(args.output, args.tag, args.busybox))


if __name__ == "__main__":
    main()

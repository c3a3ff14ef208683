#!/usr/bin/env python3
"""Write OCI image layers from directory trees, and an OCI image archive from layers.

e2e/images/oci_image.py builds single-layer images from a few files. The
operator image is a whole Debian root filesystem plus a Python virtual
environment. So it needs what that helper lacks: ownership, hard links and
modification times kept from the tree on disk, and several layers, so that
a rebuild after a source change repacks only the small top layer.

Each layer is streamed through gzip, never held in memory. Entries are
sorted and the gzip header carries no timestamp, so packing the same tree
twice gives the same digest. File modification times are kept as they are
on disk because Python's timestamp-based .pyc files are only valid while
their source file keeps its original mtime.

usage:
  oci_layers.py layer --root DIR [--path PATH]... [--empty PATH]... --output LAYER.tar.gz
  oci_layers.py image --name NAME --output IMAGE.tar --layer LAYER.tar.gz... [config options]

`layer` writes LAYER.tar.gz and LAYER.tar.gz.json (digests and size), and
`image` reads both. `ctr images import` and crane/skopeo (`oci-archive:`)
read the image archive.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

# The archive and argument helpers are shared with the single-layer writer one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from oci_image import json_bytes, json_list, key_value, tar_info  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd names an imported image after this annotation. The OCI ref.name
# annotation carries only the tag, as crane and skopeo expect.
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"


class _HashingWriter:
    """A write-only file object that counts and hashes what passes through it."""

    def __init__(self, target: BinaryIO | gzip.GzipFile) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def _walk(root: str, start: str, empty: set[str]) -> Iterator[str]:
    """Yield `start` and, unless it is listed in `empty`, everything below it, sorted."""
    yield start
    full = os.path.join(root, start)
    if start in empty or os.path.islink(full) or not os.path.isdir(full):
        return
    for name in sorted(os.listdir(full)):
        yield from _walk(root, os.path.join(start, name), empty)


def _entries(root: str, paths: list[str], empty: set[str]) -> list[str]:
    """List the relative paths to pack: each requested path, its parents and its contents."""
    selected: set[str] = set()
    for path in paths:
        parts = path.split("/")
        selected.update("/".join(parts[: index + 1]) for index in range(len(parts) - 1))
        if not os.path.lexists(os.path.join(root, path)):
            raise SystemExit(f"oci_layers: {path!r} not found under {root}")
        selected.update(_walk(root, path, empty))
    return sorted(selected)


def write_layer(root: str, paths: list[str], empty: list[str], output: str) -> dict[str, object]:
    """Pack `paths` of the tree at `root` into a gzip layer at `output` and return its descriptor fields."""
    relative = [path.strip("/") for path in paths] or sorted(os.listdir(root))
    temporary = output + ".tmp"
    with open(temporary, "wb") as raw:
        compressed = _HashingWriter(raw)
        # mtime=0 keeps the gzip header, and so the layer digest, reproducible.
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as zipped:
            uncompressed = _HashingWriter(zipped)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as layer:
                for path in _entries(root, relative, {item.strip("/") for item in empty}):
                    info = layer.gettarinfo(os.path.join(root, path), arcname=path)
                    # Numeric ids only: the image's /etc/passwd, not this machine's, names them.
                    info.uname = info.gname = ""
                    # Whole seconds, so PAX headers carry no fractional mtime record.
                    info.mtime = int(info.mtime)
                    if info.isreg():
                        with open(os.path.join(root, path), "rb") as handle:
                            layer.addfile(info, handle)
                    elif info.isdir() or info.issym() or info.islnk():
                        layer.addfile(info)
                    else:
                        raise SystemExit(f"oci_layers: {path!r} is a device, socket or FIFO; list it with --empty or remove it")
    os.replace(temporary, output)
    descriptor = {
        "digest": "sha256:" + compressed.sha256.hexdigest(),
        "size": compressed.size,
        "diff_id": "sha256:" + uncompressed.sha256.hexdigest(),
    }
    with open(output + ".json", "w") as handle:
        json.dump(descriptor, handle)
    return descriptor


def _descriptor(data: bytes, media_type: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def write_image(name: str, layers: list[str], runtime: dict[str, object], architecture: str, output: str) -> str:
    """Write an OCI archive of the given layers (bottom first) to `output` and return the manifest digest."""
    layer_descriptors = []
    for path in layers:
        with open(path + ".json") as handle:
            layer_descriptors.append(json.load(handle))
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": EPOCH,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"] for layer in layer_descriptors]},
        "history": [{"created": EPOCH, "created_by": f"berth e2e/images/operator/oci_layers.py {os.path.basename(path)}"} for path in layers],
    }
    config_data = json_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config_data, OCI_CONFIG),
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer["digest"], "size": layer["size"]} for layer in layer_descriptors],
    }
    manifest_data = json_bytes(manifest)
    manifest_descriptor = _descriptor(manifest_data, OCI_MANIFEST)
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **manifest_descriptor,
                "platform": {"architecture": architecture, "os": "linux"},
                "annotations": {CONTAINERD_IMAGE_NAME: name, OCI_REF_NAME: tag},
            }
        ],
    }

    temporary = output + ".tmp"
    with tarfile.open(temporary, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(tar_info("blobs", tarfile.DIRTYPE, 0o755))
        archive.addfile(tar_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        blobs: dict[str, tuple[str | None, bytes]] = {
            str(layer["digest"]): (path, b"") for path, layer in zip(layers, layer_descriptors)
        }
        blobs[str(manifest["config"]["digest"])] = (None, config_data)
        blobs[str(manifest_descriptor["digest"])] = (None, manifest_data)
        for digest, (path, data) in sorted(blobs.items()):
            entry = "blobs/sha256/" + digest.split(":", 1)[1]
            if path is None:
                archive.addfile(tar_info(entry, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
            else:
                with open(path, "rb") as handle:
                    archive.addfile(tar_info(entry, tarfile.REGTYPE, 0o644, os.fstat(handle.fileno()).st_size), handle)
        for entry, data in (("oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"})), ("index.json", json_bytes(index))):
            archive.addfile(tar_info(entry, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    os.replace(temporary, output)
    return str(manifest_descriptor["digest"])


def _runtime_config(args: argparse.Namespace) -> dict[str, object]:
    runtime: dict[str, object] = {}
    if args.entrypoint:
        runtime["Entrypoint"] = json_list(args.entrypoint, "--entrypoint")
    if args.cmd:
        runtime["Cmd"] = json_list(args.cmd, "--cmd")
    if args.env:
        runtime["Env"] = args.env
    if args.expose:
        runtime["ExposedPorts"] = {port: {} for port in args.expose}
    if args.workdir:
        runtime["WorkingDir"] = args.workdir
    if args.user:
        runtime["User"] = args.user
    if args.label:
        runtime["Labels"] = dict(key_value(item, "--label") for item in args.label)
    return runtime


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    layer = commands.add_parser("layer", help="pack a directory tree into a gzip layer")
    layer.add_argument("--root", required=True, help="directory that is / in the image")
    layer.add_argument("--path", action="append", default=[], help="path under --root to pack with its parents (default: everything)")
    layer.add_argument("--empty", action="append", default=[], help="directory under --root to pack without its contents, e.g. dev")
    layer.add_argument("--output", required=True, help="path of the layer (.tar.gz) to write")

    image = commands.add_parser("image", help="write an OCI archive from layers")
    image.add_argument("--name", required=True, help="full image reference, e.g. berth.local/operator:0.1.0")
    image.add_argument("--output", required=True, help="path of the OCI archive (.tar) to write")
    image.add_argument("--layer", action="append", required=True, help="layer written by `layer`, bottom first")
    image.add_argument("--architecture", default="amd64", help="GOARCH-style name (default: amd64)")
    image.add_argument("--entrypoint", help="JSON list, e.g. '[\"/opt/berth/bin/berth\"]'")
    image.add_argument("--cmd", help="JSON list of default arguments")
    image.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    image.add_argument("--expose", action="append", default=[], metavar="PORT/PROTO")
    image.add_argument("--workdir", default="")
    image.add_argument("--user", default="", help="UID[:GID] the process runs as")
    image.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    if args.command == "layer":
        descriptor = write_layer(args.root, args.path, args.empty, args.output)
        print(f"{descriptor['digest']} {args.output}")
    else:
        digest = write_image(args.name, args.layer, _runtime_config(args), args.architecture, args.output)
        print(f"{args.name} {digest} {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Write a single-layer OCI image archive (an OCI image layout in a tar file).

The image is built from scratch out of files on this machine, so no base image
has to be pulled. The output is reproducible: every timestamp is zero, owners
are root and entries are sorted, so the same inputs give the same digests.
`ctr images import` and crane/skopeo (`oci-archive:`) read the result.

usage:
  oci_image.py --name berth.local/pause:1.0 --output pause.tar \
      --file /pause=build/pause --entrypoint '["/pause"]'

A path given more than once is written once: a symlink wins over a file,
and a file over a directory.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd names an imported image after this annotation. The OCI ref.name
# annotation carries only the tag, as crane and skopeo expect.
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class ImageSpec:
    """Contents and runtime configuration of one image."""

    name: str
    files: dict[str, str] = field(default_factory=dict)  # path in image -> source
    directories: dict[str, int] = field(default_factory=dict)  # path in image -> mode
    symlinks: dict[str, str] = field(default_factory=dict)  # path in image -> link target
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    exposed_ports: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def tar_info(path: str, kind: bytes, mode: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.linkname = target
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parent_directories(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def build_layer(spec: ImageSpec) -> bytes:
    """Return the uncompressed layer tar for the spec's files, directories and symlinks."""
    # Each path maps to ("dir", mode), ("file", source) or ("symlink", target).
    entries: dict[str, tuple[str, int | str]] = {}
    for path in [*spec.files, *spec.symlinks]:
        for parent in _parent_directories(path.strip("/")):
            entries.setdefault(parent, ("dir", 0o755))
    for path, mode in spec.directories.items():
        entries[path.strip("/")] = ("dir", mode)
    for path, source in spec.files.items():
        entries[path.strip("/")] = ("file", source)
    for path, target in spec.symlinks.items():
        entries[path.strip("/")] = ("symlink", target)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for path, (kind, value) in sorted(entries.items()):
            if kind == "dir":
                layer.addfile(tar_info(path, tarfile.DIRTYPE, int(value)))
            elif kind == "symlink":
                layer.addfile(tar_info(path, tarfile.SYMTYPE, 0o777, target=str(value)))
            else:
                source = str(value)
                mode = stat.S_IMODE(os.stat(source).st_mode)
                with open(source, "rb") as handle:
                    data = handle.read()
                layer.addfile(tar_info(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def _blob(data: bytes, media_type: str) -> tuple[dict[str, object], bytes]:
    descriptor = {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    return descriptor, data


def json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_archive(spec: ImageSpec, output: str) -> str:
    """Write the OCI archive to `output` and return the manifest digest."""
    layer = build_layer(spec)
    # mtime=0 keeps the gzip header, and so the layer digest, reproducible.
    compressed = gzip.compress(layer, compresslevel=9, mtime=0)
    layer_descriptor, _ = _blob(compressed, OCI_LAYER_GZIP)

    runtime: dict[str, object] = {}
    if spec.entrypoint is not None:
        runtime["Entrypoint"] = spec.entrypoint
    if spec.cmd is not None:
        runtime["Cmd"] = spec.cmd
    if spec.env:
        runtime["Env"] = spec.env
    if spec.exposed_ports:
        runtime["ExposedPorts"] = {port: {} for port in spec.exposed_ports}
    if spec.workdir:
        runtime["WorkingDir"] = spec.workdir
    if spec.user:
        runtime["User"] = spec.user
    if spec.labels:
        runtime["Labels"] = spec.labels
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": runtime,
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
        },
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "berth e2e/images/oci_image.py"}],
    }
    config_descriptor, config_data = _blob(json_bytes(config), OCI_CONFIG)

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": [layer_descriptor],
    }
    manifest_descriptor, manifest_data = _blob(json_bytes(manifest), OCI_MANIFEST)

    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **manifest_descriptor,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {CONTAINERD_IMAGE_NAME: spec.name, OCI_REF_NAME: tag},
            }
        ],
    }

    blobs = {
        str(layer_descriptor["digest"]): compressed,
        str(config_descriptor["digest"]): config_data,
        str(manifest_descriptor["digest"]): manifest_data,
    }
    temporary = output + ".tmp"
    with tarfile.open(temporary, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(tar_info("blobs", tarfile.DIRTYPE, 0o755))
        archive.addfile(tar_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for digest, data in sorted(blobs.items()):
            path = "blobs/sha256/" + digest.split(":", 1)[1]
            archive.addfile(tar_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        for path, data in (
            ("oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"})),
            ("index.json", json_bytes(index)),
        ):
            archive.addfile(tar_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    os.replace(temporary, output)
    return str(manifest_descriptor["digest"])


def key_value(text: str, option: str) -> tuple[str, str]:
    if "=" not in text:
        raise SystemExit(f"invalid {option} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key, value


def json_list(text: str, option: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SystemExit(f"invalid {option} {text!r}: expected a JSON list of strings")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="full image reference, e.g. berth.local/pause:1.0")
    parser.add_argument("--output", required=True, help="path of the OCI archive (.tar) to write")
    parser.add_argument("--file", action="append", default=[], metavar="DEST=SRC",
                        help="copy SRC to DEST in the image, keeping its permission bits")
    parser.add_argument("--dir", action="append", default=[], metavar="DEST[=MODE]",
                        help="create an empty directory (octal MODE, default 755)")
    parser.add_argument("--symlink", action="append", default=[], metavar="DEST=TARGET",
                        help="create a symbolic link DEST pointing at TARGET")
    parser.add_argument("--entrypoint", help="JSON list, e.g. '[\"/pause\"]'")
    parser.add_argument("--cmd", help="JSON list of default arguments")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--expose", action="append", default=[], metavar="PORT/PROTO")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--user", default="")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    spec = ImageSpec(name=args.name, workdir=args.workdir, user=args.user, env=args.env,
                     exposed_ports=args.expose)
    for item in args.file:
        destination, source = key_value(item, "--file")
        if not os.path.isfile(source):
            raise SystemExit(f"oci_image: --file source {source!r} not found")
        spec.files[destination] = source
    for item in args.dir:
        path, _, mode = item.partition("=")
        spec.directories[path] = int(mode or "755", 8)
    for item in args.symlink:
        path, target = key_value(item, "--symlink")
        spec.symlinks[path] = target
    for item in args.label:
        key, value = key_value(item, "--label")
        spec.labels[key] = value
    if args.entrypoint:
        spec.entrypoint = json_list(args.entrypoint, "--entrypoint")
    if args.cmd:
        spec.cmd = json_list(args.cmd, "--cmd")

    digest = write_archive(spec, args.output)
    print(f"{spec.name} {digest} {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

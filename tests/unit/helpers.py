"""Helpers shared by the unit tests: examples, CRDs and Registry bodies."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_examples() -> dict[str, list[dict[str, Any]]]:
    """Return every document of every file in examples/, by file name."""
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc] for path in sorted((ROOT / "examples").glob("*.yaml"))}


def registry_body(spec: dict[str, Any], name: str = "demo", namespace: str = "ns", generation: int = 1) -> dict[str, Any]:
    """Build a Registry object as the API server would return it."""
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Registry",
        "metadata": {"name": name, "namespace": namespace, "uid": "0b5e2c1a-0000-4000-8000-000000000001", "generation": generation},
        "spec": spec,
    }


def load_crds() -> dict[str, dict[str, Any]]:
    """The CRDs in crds/, by kind."""
    result = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        result[doc["spec"]["names"]["kind"]] = doc
    return result

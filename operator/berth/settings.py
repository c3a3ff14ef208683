"""Operator-wide settings: chart values reach the operator as these environment variables.

The images berth deploys are settings, not CRD defaults, so an air-gapped
cluster can point them at a mirror without editing every Registry.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

# CNCF Distribution v3, the registry berth deploys when spec.image is unset.
DEFAULT_REGISTRY_IMAGE = "docker.io/library/registry:3.0.0"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings read once at operator start."""

    registry_image: str = DEFAULT_REGISTRY_IMAGE
    cluster_domain: str = "cluster.local"
    # Interval of the periodic resync, in seconds: drift repair, certificate
    # renewal, and retries of Registries stalled on a missing object.
    resync_seconds: float = 60.0
    field_manager: str = "berth"


class SettingsError(ValueError):
    """An operator setting has an invalid value."""


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from BERTH_* environment variables, falling back to defaults."""
    env = os.environ if environ is None else environ
    image = env.get("BERTH_REGISTRY_IMAGE", DEFAULT_REGISTRY_IMAGE).strip()
    if not image:
        raise SettingsError("BERTH_REGISTRY_IMAGE is empty; set it to an image reference such as registry.example.com/registry:3.0.0")
    raw_interval = env.get("BERTH_RESYNC_SECONDS", "60")
    try:
        interval = float(raw_interval)
    except ValueError:
        raise SettingsError(f"BERTH_RESYNC_SECONDS: invalid number {raw_interval!r}") from None
    if interval < 1:
        raise SettingsError(f"BERTH_RESYNC_SECONDS must be at least 1, got {raw_interval!r}")
    return Settings(
        registry_image=image,
        cluster_domain=env.get("BERTH_CLUSTER_DOMAIN", "cluster.local").strip() or "cluster.local",
        resync_seconds=interval,
    )

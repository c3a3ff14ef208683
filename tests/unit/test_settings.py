"""Operator settings from the environment, and the command line's input checks."""

from __future__ import annotations

import pytest

from berth import cli, settings


def test_defaults() -> None:
    loaded = settings.from_environment({})
    assert loaded.registry_image == settings.DEFAULT_REGISTRY_IMAGE
    assert loaded.resync_seconds == 60
    assert loaded.cluster_domain == "cluster.local"


def test_overrides() -> None:
    loaded = settings.from_environment({"BERTH_REGISTRY_IMAGE": "mirror.local/registry:3", "BERTH_RESYNC_SECONDS": "5", "BERTH_CLUSTER_DOMAIN": "corp"})
    assert loaded.registry_image == "mirror.local/registry:3"
    assert loaded.resync_seconds == 5
    assert loaded.cluster_domain == "corp"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BERTH_RESYNC_SECONDS": "soon"}, "invalid number 'soon'"),
        ({"BERTH_RESYNC_SECONDS": "0.5"}, "at least 1"),
        ({"BERTH_REGISTRY_IMAGE": "  "}, "BERTH_REGISTRY_IMAGE is empty"),
    ],
)
def test_invalid_settings(environ: dict[str, str], message: str) -> None:
    with pytest.raises(settings.SettingsError, match=message):
        settings.from_environment(environ)


def test_cli_rejects_bad_settings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BERTH_RESYNC_SECONDS", "never")
    assert cli.main(["run"]) == 2
    assert "BERTH_RESYNC_SECONDS: invalid number 'never'" in capsys.readouterr().err


def test_cli_rejects_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--health-port", "70000"]) == 2
    assert "invalid --health-port 70000" in capsys.readouterr().err


def test_cli_scope_flags_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--namespace", "a", "--all-namespaces"])
    assert "not allowed with argument" in capsys.readouterr().err

"""`--cri-endpoint auto`: the first runtime socket that exists, in crictl's spirit."""

from __future__ import annotations

import pytest

from agent.discovery import settings

CRIO = "unix:///var/run/crio/crio.sock"
CONTAINERD = "unix:///run/containerd/containerd.sock"
LAB = "unix:///run/podbw-lab/crio.sock"


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ({CRIO, CONTAINERD, LAB}, CRIO),
        ({CONTAINERD, LAB}, CONTAINERD),
        ({CONTAINERD}, CONTAINERD),
        ({LAB}, LAB),
        (set(), CRIO),  # nothing yet: wait for CRI-O's socket (not ready) rather than guess
    ],
    ids=["all", "containerd-and-lab", "containerd", "lab", "none"],
)
def test_auto_takes_the_first_existing_socket(monkeypatch: pytest.MonkeyPatch, existing: set[str],
                                              expected: str) -> None:
    paths = {endpoint.removeprefix("unix://") for endpoint in existing}
    monkeypatch.setattr(settings.os.path, "exists", lambda path: path in paths)
    assert settings.parse_cri_endpoint("auto") == expected


@pytest.mark.parametrize(("value", "expected"), [("none", None), ("", None), ("/x.sock", "unix:///x.sock")])
def test_explicit_values_are_taken_as_they_are(value: str, expected: str | None) -> None:
    assert settings.parse_cri_endpoint(value) == expected


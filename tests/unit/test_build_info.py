"""The revision podbw_build_info reports: what the build wrote into the package, or "unknown"."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.metrics.build_info import REVISION_FILE, UNKNOWN, read_revision

SHA = "5ac08ff3c2d1e0b9a8f7e6d5c4b3a2918f7e6d5c"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{SHA}\n", SHA),  # as the Dockerfile writes it
        (f"  {SHA}  ", SHA),
        ("5ac08ff", "5ac08ff"),
        ("v0.1.0-3-g5ac08ff-dirty", "v0.1.0-3-g5ac08ff-dirty"),
        ("", UNKNOWN),  # the build argument was empty
        ("a b", UNKNOWN),
        ('x"} 1\nevil 2', UNKNOWN),  # never a label value that breaks the exposition
        ("x" * 65, UNKNOWN),
        (b"\xff\xfe".decode("latin-1"), UNKNOWN),
    ],
)
def test_revision_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "revision.txt"
    path.write_bytes(content.encode("latin-1"))
    assert read_revision(path) == expected


def test_no_revision_file_is_unknown(tmp_path: Path) -> None:
    assert read_revision(tmp_path / "missing") == UNKNOWN
    assert read_revision(tmp_path) == UNKNOWN  # a directory


def test_the_revision_file_lives_in_the_package_and_is_shipped_in_the_wheel() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    assert REVISION_FILE.parent == root / "agent"
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert REVISION_FILE.name in pyproject["tool"]["setuptools"]["package-data"]["agent"]
    assert f"agent/{REVISION_FILE.name}" in (root / ".gitignore").read_text().split()

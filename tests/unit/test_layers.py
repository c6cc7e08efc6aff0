"""The layer contract of DESIGN.md, enforced by import-linter."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_no_subprocess_outside_the_lab() -> None:
    offenders = []
    for path in (ROOT / "agent").rglob("*.py"):
        if "lab" in path.relative_to(ROOT / "agent").parts[:1]:
            continue
        text = path.read_text()
        for banned in ("import subprocess", "from subprocess", "os.system(", "os.popen("):
            if banned in text:
                offenders.append(f"{path.relative_to(ROOT)}: {banned}")
    assert offenders == []

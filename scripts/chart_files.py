"""Copy the Grafana dashboards and the alert rules from dashboards/ into the Helm chart.

A packaged chart must hold real files (Helm warns about symlinks on every command), so
helm/podbw/files/ keeps copies; `make dashboards` refreshes them and `--check` (run by the
chart tests) fails when one is missing, stale, or left over from a removed dashboard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES_NAME = "alerts.rules.yaml"


def expected_files(root: Path) -> dict[Path, bytes]:
    """Chart path -> the bytes it must hold: every dashboards/*.json and the rule file."""
    source_dir = root / "dashboards"
    files_dir = root / "helm" / "podbw" / "files"
    wanted = {files_dir / "dashboards" / src.name: src.read_bytes() for src in sorted(source_dir.glob("*.json"))}
    wanted[files_dir / RULES_NAME] = (source_dir / RULES_NAME).read_bytes()
    return wanted


def leftovers(root: Path, wanted: dict[Path, bytes]) -> list[Path]:
    """Dashboards in the chart that dashboards/ no longer has."""
    copies = (root / "helm" / "podbw" / "files" / "dashboards").glob("*.json")
    return sorted(path for path in copies if path not in wanted)


def problems(root: Path) -> list[str]:
    wanted = expected_files(root)
    found = []
    for path, data in wanted.items():
        rel = path.relative_to(root)
        if path.is_symlink():
            found.append(f"{rel} is a symlink; the chart needs a real file")
        elif not path.is_file():
            found.append(f"{rel} is missing")
        elif path.read_bytes() != data:
            found.append(f"{rel} differs from dashboards/{path.name}")
    found += [f"{path.relative_to(root)} has no source in dashboards/" for path in leftovers(root, wanted)]
    return found


def sync(root: Path) -> list[Path]:
    """Write every copy that differs, remove leftovers; returns the paths changed."""
    wanted = expected_files(root)
    changed = []
    for path, data in wanted.items():
        if path.is_symlink() or not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            changed.append(path)
    for path in leftovers(root, wanted):
        path.unlink()
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the chart's copies are stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.root)
        for line in found:
            print(f"chart_files: {line}; run `make dashboards`", file=sys.stderr)
        return 1 if found else 0
    for path in sync(args.root):
        print(path.relative_to(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`helm template` without helm: values merged as Helm merges them, checked against
values.schema.json as Helm checks them, then rendered by render.go (Go text/template + sprig,
the engine Helm is built on) from Debian's Go packages."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "podbw"
RENDER_SOURCE = Path(__file__).resolve().parent / "render.go"
GO_ENV = {"GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOFLAGS": ""}
RELEASE_NAME = "podbw"
RELEASE_NAMESPACE = "monitoring"
KUBE_VERSION = "v1.30.0"
RENDER_TIMEOUT_S = 30.0


class ChartError(Exception):
    """Helm would refuse this install: values against the schema, or a template failure."""


def build_renderer(work_dir: Path) -> Path:
    """Compile render.go into work_dir (GOPATH mode: no module download, Debian's sources)."""
    binary = work_dir / "render"
    env = {**os.environ, **GO_ENV, "GOCACHE": str(work_dir / "gocache")}
    result = subprocess.run(
        ["go", "build", "-o", str(binary), str(RENDER_SOURCE)],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build render.go failed:\n{result.stderr}")
    return binary


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of `-f` files over the chart's values.yaml: maps merge key by key,
    anything else replaces, and null deletes the key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def schema(chart_dir: Path = CHART_DIR) -> dict[str, Any]:
    return json.loads((chart_dir / "values.schema.json").read_text())


def validate_values(values: dict[str, Any], chart_dir: Path = CHART_DIR) -> None:
    validator = jsonschema.Draft7Validator(schema(chart_dir))
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
        raise ChartError("values don't meet the specifications of the schema:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Rendered:
    values: dict[str, Any]
    manifests: dict[str, list[dict[str, Any]]]
    """Template path ("podbw/templates/daemonset.yaml") -> its non-empty YAML documents."""
    notes: str

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [doc for docs in self.manifests.values() for doc in docs]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kinds(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


def _run(binary: Path, chart_dir: Path, values_file: Path, *extra: str) -> str:
    result = subprocess.run(
        [
            str(binary),
            "--values", str(values_file),
            "--release-name", RELEASE_NAME,
            "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION,
            *extra,
            str(chart_dir),
        ],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise ChartError(result.stderr.strip())
    return result.stdout


_SOURCE = re.compile(r"^---\n# Source: (.+)$", re.MULTILINE)


def split_stream(stream: str) -> dict[str, list[dict[str, Any]]]:
    parts = _SOURCE.split(stream)
    manifests: dict[str, list[dict[str, Any]]] = {}
    for source, text in zip(parts[1::2], parts[2::2]):
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        manifests.setdefault(source, []).extend(docs)
    return manifests


def render(
    binary: Path,
    work_dir: Path,
    user_values: dict[str, Any] | None = None,
    chart_dir: Path = CHART_DIR,
    validate: bool = True,
    api_versions: tuple[str, ...] = (),
) -> Rendered:
    """`helm template` with the chart's values.yaml under user_values (one `-f` file)."""
    values = merge_values(load_yaml(chart_dir / "values.yaml"), user_values or {})
    if validate:
        validate_values(values, chart_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    values_file = work_dir / "values.json"  # JSON is YAML; keeps floats and strings exact
    values_file.write_text(json.dumps(values))
    extra = [arg for version in api_versions for arg in ("--api-versions", version)]
    stream = _run(binary, chart_dir, values_file, *extra)
    notes = _run(binary, chart_dir, values_file, "--notes", *extra)
    return Rendered(values=values, manifests=split_stream(stream), notes=notes)


def chart_links(chart_dir: Path = CHART_DIR) -> list[Path]:
    return sorted(path for path in (chart_dir / "files").rglob("*") if path.is_symlink())


def chart_with_placeholders(tmp_root: Path) -> Path:
    """A copy of the chart whose files/ symlinks resolve, for when dashboards/ is not written
    yet: the same relative layout under tmp_root, with minimal placeholder targets."""
    chart_copy = tmp_root / "helm" / "podbw"
    shutil.copytree(CHART_DIR, chart_copy, symlinks=True)
    for link in chart_links(chart_copy):
        target = (link.parent / os.readlink(link)).resolve()
        real = (CHART_DIR / link.relative_to(chart_copy)).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        if real.exists():
            shutil.copyfile(real, target)
        elif target.suffix == ".json":
            target.write_text(json.dumps({"title": f"placeholder {target.stem}", "panels": []}) + "\n")
        else:
            target.write_text(
                "groups:\n  - name: placeholder\n    rules:\n      - alert: PodbwDown\n"
                '        expr: up{job="podbw"} == 0\n        labels:\n          severity: warning\n'
            )
    return chart_copy

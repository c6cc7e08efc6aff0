"""The chart rendered by the real `helm` (scripts/install.sh puts it in .tools/bin).

Manifests come from `helm template`. The values Helm computed and the NOTES come from a copy
of the chart with one extra template, the probe, that prints `.Values` and the NOTES through
`tpl`: `helm template` does not print NOTES, and `helm install --dry-run` cannot be told which
APIs the cluster serves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "podbw"
RELEASE_NAME = "podbw"
RELEASE_NAMESPACE = "monitoring"
OLDEST_KUBE_VERSION = "1.25"  # Chart.yaml kubeVersion ">=1.25.0-0"
NEWEST_KUBE_VERSION = "1.35"  # the newest minor released with the helm and kubectl in .tools/bin
KUBE_VERSIONS = (OLDEST_KUBE_VERSION, NEWEST_KUBE_VERSION)
HELM_TIMEOUT_S = 60.0

PROBE_TEMPLATE = "templates/zz-test-probe.yaml"
PROBE_NOTES = "files/test-probe-notes.txt"
PROBE_NAME = "podbw-test-probe"
_PROBE = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: {PROBE_NAME}
data:
  values: {{{{ toJson .Values | quote }}}}
  notes: {{{{ tpl (.Files.Get "{PROBE_NOTES}") . | quote }}}}
"""


class ChartError(Exception):
    """helm refused: values against the schema, or a template failure (helm's own message)."""


class Helm:
    """The helm binary with its own config, cache and data dirs, and no cluster to reach."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "no-kubeconfig"),
        }

    def run(self, *args: str | Path) -> str:
        result = subprocess.run(
            [str(self.binary), *map(str, args)], env=self.env, capture_output=True, text=True, timeout=HELM_TIMEOUT_S
        )
        if result.returncode != 0:
            raise ChartError(result.stderr.strip())
        return result.stdout


def make_probe_chart(work_dir: Path) -> Path:
    """A copy of the chart that also renders the probe ConfigMap."""
    probe = work_dir / CHART_DIR.name
    shutil.copytree(CHART_DIR, probe)
    shutil.copyfile(CHART_DIR / "templates" / "NOTES.txt", probe / PROBE_NOTES)
    (probe / PROBE_TEMPLATE).write_text(_PROBE)
    return probe


@dataclass(frozen=True)
class Rendered:
    kube_version: str
    values: dict[str, Any]
    """The values Helm computed (values.yaml under the -f file), as the templates saw them."""
    stream: str
    """`helm template`'s output, as kubectl or kubernetes-validate would read it."""
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


_SOURCE = re.compile(r"^---\n# Source: (.+)$", re.MULTILINE)


def split_stream(stream: str) -> dict[str, list[dict[str, Any]]]:
    parts = _SOURCE.split(stream)
    manifests: dict[str, list[dict[str, Any]]] = {}
    for source, text in zip(parts[1::2], parts[2::2]):
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        manifests.setdefault(source, []).extend(docs)
    return manifests


def template_args(
    chart: Path, values_file: Path | None, kube_version: str, api_versions: tuple[str, ...] = (), *extra: str
) -> list[str | Path]:
    args: list[str | Path] = ["template", RELEASE_NAME, chart, "--namespace", RELEASE_NAMESPACE]
    args += ["--kube-version", kube_version]
    if values_file is not None:
        args += ["--values", values_file]
    for version in api_versions:
        args += ["--api-versions", version]
    return args + list(extra)


def render(
    helm: Helm,
    probe_chart: Path,
    values_file: Path | None,
    kube_version: str = NEWEST_KUBE_VERSION,
    api_versions: tuple[str, ...] = (),
    skip_schema: bool = False,
) -> Rendered:
    """`helm template` of the chart, and of the probe for the computed values and NOTES."""
    extra = ("--skip-schema-validation",) if skip_schema else ()
    stream = helm.run(*template_args(CHART_DIR, values_file, kube_version, api_versions, *extra))
    probe_out = helm.run(
        *template_args(probe_chart, values_file, kube_version, api_versions, *extra, "--show-only", PROBE_TEMPLATE)
    )
    [probe] = [doc for doc in yaml.safe_load_all(probe_out) if doc]
    return Rendered(
        kube_version=kube_version,
        values=json.loads(probe["data"]["values"]),
        stream=stream,
        manifests=split_stream(stream),
        notes=probe["data"]["notes"],
    )


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}

"""What the real tools say about the chart: `helm lint --strict`, `kubernetes-validate --strict`
on `helm template`'s output at the oldest and newest supported minors, `helm package`, and
`helm install --dry-run` agreeing with the probe the other tests read NOTES from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helm import harness
from tests.helm.conftest import SCENARIOS, scenario_values_file

KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),  # only from ci/tls-values.yaml's extraObjects
}
"""Kinds kubernetes-validate has no schema for; everything else must pass its strict check."""
_NO_SCHEMA = re.compile(r"^WARN .* Couldn't find schema for kind (\S+) with api version (\S+) for kubernetes version")


@pytest.mark.parametrize("kube_version", harness.KUBE_VERSIONS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_helm_lint_strict(helm: harness.Helm, name: str, kube_version: str) -> None:
    args: list[str | Path] = ["lint", "--strict", "--kube-version", kube_version, harness.CHART_DIR]
    values_file = scenario_values_file(name)
    if values_file is not None:
        args += ["--values", values_file]
    output = helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in output, output
    assert "[INFO]" not in output and "[WARNING]" not in output, output


def test_kubernetes_validate_strict(scenario: harness.Rendered, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(scenario.stream)
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", f"{scenario.kube_version}.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    for line in filter(None, output.splitlines()):
        unvalidated = _NO_SCHEMA.match(line)
        assert unvalidated, line
        assert (unvalidated.group(2), unvalidated.group(1)) in CUSTOM_KINDS, line


def test_kubernetes_validate_catches_what_the_chart_must_not_render(tmp_path: Path) -> None:
    # The check above can fail: a field the API does not have is an error under --strict.
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None, bogus: 1}\n")
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", f"{harness.OLDEST_KUBE_VERSION}.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "bogus" in result.stdout + result.stderr


def test_kube_versions_below_the_chart_floor_are_refused(helm: harness.Helm) -> None:
    with pytest.raises(harness.ChartError, match="kubeVersion"):
        helm.run(*harness.template_args(harness.CHART_DIR, None, "1.24"))


def test_helm_package_holds_real_files_and_renders_the_same(helm: harness.Helm, tmp_path: Path) -> None:
    output = helm.run("package", harness.CHART_DIR, "--destination", tmp_path)
    [package] = tmp_path.glob("podbw-*.tgz")
    assert str(package) in output
    with tarfile.open(package) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(m.isfile() or m.isdir() for m in members.values()), "no links in a packaged chart"
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/NOTES.txt",
                 "files/alerts.rules.yaml", "files/dashboards/node.json", "files/dashboards/pod.json"):
        assert f"podbw/{name}" in members, name
    from_package = helm.run(*harness.template_args(package, None, harness.NEWEST_KUBE_VERSION, (), "--set", "dashboards.enabled=true"))
    from_dir = helm.run(*harness.template_args(harness.CHART_DIR, None, harness.NEWEST_KUBE_VERSION, (), "--set", "dashboards.enabled=true"))
    assert from_package == from_dir


@pytest.mark.parametrize("name", ["default", "subchart-values.yaml"])
def test_probe_notes_are_what_helm_install_prints(helm: harness.Helm, rendered_scenarios, name: str) -> None:
    args: list[str | Path] = ["install", harness.RELEASE_NAME, harness.CHART_DIR, "--namespace", harness.RELEASE_NAMESPACE]
    args += ["--dry-run=client", "--output", "json"]
    values_file = scenario_values_file(name)
    if values_file is not None:
        args += ["--values", values_file]
    release = json.loads(helm.run(*args))
    probed = rendered_scenarios[(name, harness.NEWEST_KUBE_VERSION)]
    assert release["info"]["notes"].strip() == probed.notes.strip()
    assert harness.split_stream(release["manifest"]) == probed.manifests

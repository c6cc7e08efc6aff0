"""The chart's files against their sources: real copies of dashboards/ (no symlinks), README.md
and the schema's descriptions generated from values.yaml, Chart.yaml's metadata, and a schema
that declares every value."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.helm import harness

SCRIPTS = harness.ROOT / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"podbw_scripts_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chart_files = load_script("chart_files")
chart_docs = load_script("chart_docs")


def run_script(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


# ---- copies of dashboards/ --------------------------------------------------------------------


def test_no_symlinks_in_the_chart() -> None:
    links = [str(p.relative_to(harness.CHART_DIR)) for p in harness.CHART_DIR.rglob("*") if p.is_symlink()]
    assert links == []


def test_chart_copies_are_the_dashboards_and_rules() -> None:
    result = run_script("chart_files", "--check")
    assert result.returncode == 0, result.stderr
    copies = sorted(p.name for p in (harness.CHART_DIR / "files" / "dashboards").iterdir())
    assert copies == sorted(p.name for p in (harness.ROOT / "dashboards").glob("*.json")) != []


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """dashboards/ and the chart's files/, enough for chart_files.py to work on."""
    shutil.copytree(harness.ROOT / "dashboards", tmp_path / "dashboards")
    shutil.copytree(harness.CHART_DIR / "files", tmp_path / "helm" / "podbw" / "files")
    return tmp_path


def test_stale_missing_and_leftover_copies_are_reported_then_fixed(repo_copy: Path) -> None:
    files = repo_copy / "helm" / "podbw" / "files"
    (repo_copy / "dashboards" / "alerts.rules.yaml").write_text("groups: []\n")
    (files / "dashboards" / "pod.json").unlink()
    (files / "dashboards" / "old.json").write_text("{}\n")
    (files / "dashboards" / "node.json").unlink()
    (files / "dashboards" / "node.json").symlink_to(repo_copy / "dashboards" / "node.json")
    result = run_script("chart_files", "--check", "--root", repo_copy)
    assert result.returncode == 1
    for expected in ("alerts.rules.yaml differs", "pod.json is missing", "old.json has no source", "node.json is a symlink"):
        assert expected in result.stderr, result.stderr
    assert run_script("chart_files", "--root", repo_copy).returncode == 0
    assert chart_files.problems(repo_copy) == []
    assert not (files / "dashboards" / "node.json").is_symlink()
    assert (files / "alerts.rules.yaml").read_text() == "groups: []\n"


# ---- README.md and the schema, from values.yaml -----------------------------------------------


def test_readme_and_schema_descriptions_are_generated_from_values_yaml() -> None:
    result = run_script("chart_docs", "--check")
    assert result.returncode == 0, result.stderr


def test_every_value_is_in_the_readme() -> None:
    docs = chart_docs.value_docs((harness.CHART_DIR / "values.yaml").read_text())
    readme = (harness.CHART_DIR / "README.md").read_text()
    assert len(docs) > 80
    for doc in docs:
        assert f"| `{doc.key}` |" in readme, doc.key


@pytest.mark.parametrize(
    "values_text, expected",
    [
        ("# The port.\nport: 1\n", [("port", "The port.", 1)]),
        ("# Two\n# lines.\na: {}\n", [("a", "Two lines.", {})]),
        ("# Section.\ns:\n  # Inner.\n  x: true\n", [("s", "Section.", {"x": True}), ("s.x", "Inner.", True)]),
        # A commented-out example below a key is not the next key's description.
        ("# Labels.\nl: {}\n#   team: x\n# Next.\nn: 2\n", [("l", "Labels.", {}), ("n", "Next.", 2)]),
        # Keys inside list items are not values of the chart.
        ("# Tolerations.\nt:\n  - operator: Exists\n    effect: NoSchedule\n", [("t", "Tolerations.", [{"operator": "Exists", "effect": "NoSchedule"}])]),
        ("a: 1\n", [("a", "", 1)]),
    ],
)
def test_value_docs_parse(values_text: str, expected: list) -> None:
    docs = chart_docs.value_docs(values_text)
    assert [(d.key, d.description, d.default) for d in docs] == expected


def test_a_key_without_a_description_is_refused(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(harness.CHART_DIR, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "\nundocumented: 1\n")
    result = run_script("chart_docs", "--check", "--chart-dir", chart)
    assert result.returncode == 2 and "undocumented (values.yaml line" in result.stderr


def test_an_edited_comment_makes_readme_and_schema_stale(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(harness.CHART_DIR, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("# Old DaemonSet revisions kept", "# Old DaemonSet revisions retained"))
    result = run_script("chart_docs", "--check", "--chart-dir", chart)
    assert result.returncode == 1
    assert "README.md is stale" in result.stderr and "values.schema.json is stale" in result.stderr
    assert run_script("chart_docs", "--chart-dir", chart).returncode == 0
    assert "Old DaemonSet revisions retained" in (chart / "README.md").read_text()
    schema = json.loads((chart / "values.schema.json").read_text())
    assert schema["properties"]["revisionHistoryLimit"]["description"].startswith("Old DaemonSet revisions retained")


def test_schema_declares_every_value() -> None:
    schema = json.loads((harness.CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for doc in chart_docs.value_docs((harness.CHART_DIR / "values.yaml").read_text()):
        node, declared = schema, True
        for part in doc.path:
            if part in node.get("properties", {}):
                node = node["properties"][part]
            else:  # inside a free-form map (resources.requests): typed, not declared
                node, declared = node["additionalProperties"], False
        if declared:
            assert node["description"] == doc.description, doc.key
            if "properties" not in node:
                assert node["default"] == doc.default, doc.key
        else:
            assert isinstance(node, dict) and node.get("type"), doc.key
    defaults = harness.load_yaml(harness.CHART_DIR / "values.yaml")
    assert list(schema["properties"]) == list(defaults)


def test_each_alert_can_be_disabled_by_name() -> None:
    schema = json.loads((harness.CHART_DIR / "values.schema.json").read_text())
    disabled = schema["properties"]["prometheusRule"]["properties"]["disabled"]
    rules = yaml.safe_load((harness.CHART_DIR / "files" / "alerts.rules.yaml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert disabled["propertyNames"]["enum"] == alerts


# ---- Chart.yaml -------------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = harness.load_yaml(harness.CHART_DIR / "Chart.yaml")
    assert chart["kubeVersion"] == f">={harness.OLDEST_KUBE_VERSION}.0-0"
    assert chart["home"].startswith("https://") and chart["sources"] == [chart["home"]]
    # The icon is served from the repository's docs/img, at the home's raw address.
    raw_prefix = chart["home"].replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert chart["icon"].startswith(raw_prefix)
    assert (harness.ROOT / chart["icon"][len(raw_prefix) :]).is_file()

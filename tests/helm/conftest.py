"""Session fixtures: one helm, one probe chart, each scenario rendered once per kube version."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests import tools
from tests.helm import harness

SCENARIOS = ["default"] + sorted(p.name for p in (harness.CHART_DIR / "ci").glob("*-values.yaml"))
"""`default` (values.yaml alone) and every ci/*-values.yaml, as chart-testing would install them."""


def scenario_values_file(name: str) -> Path | None:
    return None if name == "default" else harness.CHART_DIR / "ci" / name


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> harness.Helm:
    return harness.Helm(tools.helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness.make_probe_chart(tmp_path_factory.mktemp("probe"))


RenderFn = Callable[..., harness.Rendered]


@pytest.fixture(scope="session")
def render(helm: harness.Helm, probe_chart: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderFn:
    """Render with `user_values` as one -f file (JSON, which is YAML and keeps types exact)."""
    counter = iter(range(1_000_000))

    def _render(user_values: dict | None = None, **kwargs) -> harness.Rendered:
        values_file = tmp_path_factory.mktemp(f"values-{next(counter)}") / "values.yaml"
        values_file.write_text(yaml.safe_dump(user_values or {}))
        return harness.render(helm, probe_chart, values_file, **kwargs)

    return _render


@pytest.fixture(scope="session")
def rendered_scenarios(helm: harness.Helm, probe_chart: Path) -> dict[tuple[str, str], harness.Rendered]:
    return {
        (name, version): harness.render(helm, probe_chart, scenario_values_file(name), kube_version=version)
        for name in SCENARIOS
        for version in harness.KUBE_VERSIONS
    }


@pytest.fixture(params=[(n, v) for n in SCENARIOS for v in harness.KUBE_VERSIONS], ids=lambda p: f"{p[0]}@{p[1]}")
def scenario(request: pytest.FixtureRequest, rendered_scenarios) -> harness.Rendered:
    return rendered_scenarios[request.param]


@pytest.fixture(scope="session")
def defaults(rendered_scenarios) -> harness.Rendered:
    return rendered_scenarios[("default", harness.NEWEST_KUBE_VERSION)]


def scenario_named(rendered_scenarios, name: str) -> harness.Rendered:
    return rendered_scenarios[(name, harness.NEWEST_KUBE_VERSION)]

"""Session fixtures: the renderer is compiled once, each scenario rendered once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.helm import harness

SCENARIOS = ["default"] + sorted(p.name for p in (harness.CHART_DIR / "ci").glob("*-values.yaml"))


@pytest.fixture(scope="session")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        pytest.fail("go is not installed: run scripts/install.sh (golang-go and the sprig/yaml.v3 packages)")
    return harness.build_renderer(tmp_path_factory.mktemp("render-go"))


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart itself once its files/ symlinks resolve; until then a copy with placeholders."""
    if all(link.exists() for link in harness.chart_links()):
        return harness.CHART_DIR
    return harness.chart_with_placeholders(tmp_path_factory.mktemp("chart"))


RenderFn = Callable[..., harness.Rendered]


@pytest.fixture(scope="session")
def render(renderer: Path, chart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderFn:
    counter = iter(range(1_000_000))

    def _render(user_values: dict | None = None, **kwargs) -> harness.Rendered:
        work = tmp_path_factory.mktemp(f"values-{next(counter)}")
        return harness.render(renderer, work, user_values, chart_dir=chart_dir, **kwargs)

    return _render


@pytest.fixture(scope="session")
def rendered_scenarios(render: RenderFn) -> dict[str, harness.Rendered]:
    out = {}
    for name in SCENARIOS:
        values = {} if name == "default" else harness.load_yaml(harness.CHART_DIR / "ci" / name)
        out[name] = render(values)
    return out


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest, rendered_scenarios: dict[str, harness.Rendered]) -> harness.Rendered:
    return rendered_scenarios[request.param]

"""`podbw dashboards`: write the Grafana dashboards' JSON from the grafanalib sources.

The sources are the repository's `dashboards/*.dashboard.py` (found next to the package, so
this works from a checkout or an editable install). Each defines `build(multi_cluster)` and,
for grafanalib's own `generate-dashboards`, `dashboard`. `X.dashboard.py` becomes `X.json`,
with sorted keys and a trailing newline so that regenerating is byte-for-byte stable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Any

from agent.cli.extras import MissingExtra, require
from agent.cli.flags import add_flag
from agent.cli.parser import CommandParser
from agent.model.value_parsers import boolean

SOURCE_SUFFIX = ".dashboard.py"


class DashboardsError(Exception):
    """The dashboard sources are missing or do not build."""


def default_source_dir() -> str:
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # agent/
    return os.path.join(os.path.dirname(package_dir), "dashboards")


def register(sub: argparse._SubParsersAction) -> None:
    parser: CommandParser = sub.add_parser("dashboards", help="write the Grafana dashboards' JSON (or --check it)")
    add_flag(parser, "--source-dir", default_source_dir(), "directory of the *.dashboard.py sources")
    add_flag(parser, "--output-dir", None, "where to write the JSON (default: the source directory)")
    add_flag(
        parser, "--check", False, "write nothing; exit 1 when a JSON file is missing or stale", boolean, switch=True
    )
    add_flag(
        parser,
        "--multi-cluster",
        False,
        "show the cluster variable (one Prometheus or Thanos holding several clusters)",
        boolean,
        switch=True,
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output_dir = args.output_dir or args.source_dir
    try:
        require("grafanalib", "dashboards", "podbw dashboards")
        rendered = render_all(args.source_dir, multi_cluster=bool(args.multi_cluster))
    except (DashboardsError, MissingExtra) as e:
        print(f"podbw dashboards: {e}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(rendered, output_dir)
        for name in stale:
            path = os.path.join(output_dir, name)
            print(f"podbw dashboards: {path} is stale; run `podbw dashboards`", file=sys.stderr)
        if not stale:
            print(f"{len(rendered)} dashboards up to date in {output_dir}")
        return 1 if stale else 0
    os.makedirs(output_dir, exist_ok=True)
    for name, text in rendered.items():
        path = os.path.join(output_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(path)
    return 0


def source_paths(source_dir: str) -> list[str]:
    try:
        names = sorted(n for n in os.listdir(source_dir) if n.endswith(SOURCE_SUFFIX))
    except OSError as e:
        raise DashboardsError(f"cannot list {source_dir}: {e.strerror}") from e
    if not names:
        raise DashboardsError(f"no *{SOURCE_SUFFIX} files in {source_dir}")
    return [os.path.join(source_dir, n) for n in names]


def json_name(source_path: str) -> str:
    return os.path.basename(source_path)[: -len(SOURCE_SUFFIX)] + ".json"


def render_all(source_dir: str, multi_cluster: bool = False) -> dict[str, str]:
    """JSON file name -> its text, for every source in `source_dir`."""
    return {json_name(p): render(load(p), multi_cluster) for p in source_paths(source_dir)}


def load(path: str) -> ModuleType:
    name = "podbw_dashboard_" + os.path.basename(path)[: -len(SOURCE_SUFFIX)].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DashboardsError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken source: say which one, not a traceback
        raise DashboardsError(f"{path}: {type(e).__name__}: {e}") from e
    return module


def render(module: ModuleType, multi_cluster: bool = False) -> str:
    build = getattr(module, "build", None)
    dashboard = build(multi_cluster=multi_cluster) if build is not None else getattr(module, "dashboard", None)
    if dashboard is None:
        raise DashboardsError(f"{module.__file__} defines neither build() nor dashboard")
    return json.dumps(dashboard.to_json_data(), sort_keys=True, indent=2, default=_to_json) + "\n"


def _to_json(obj: Any) -> Any:
    to_json_data = getattr(obj, "to_json_data", None)
    if to_json_data is None:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return to_json_data()


def stale_files(rendered: dict[str, str], output_dir: str) -> list[str]:
    stale = []
    for name, text in rendered.items():
        try:
            with open(os.path.join(output_dir, name), encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            stale.append(name)
    return stale

"""Reading the generated dashboard JSON: panels, their queries, and Grafana variable substitution."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARDS_DIR = os.path.join(REPO_ROOT, "dashboards")
DASHBOARD_FILES = ("node.json", "pod.json")

_VARIABLE_RE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str
    legend: str
    instant: bool

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def load(name: str) -> dict[str, Any]:
    with open(os.path.join(DASHBOARDS_DIR, name), encoding="utf-8") as f:
        return json.load(f)


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, nested ones too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(
                dashboard=dashboard["title"],
                panel=panel["title"],
                ref=target["refId"],
                expr=target["expr"],
                legend=target.get("legendFormat", ""),
                instant=bool(target.get("instant")),
            )


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["templating"]["list"])


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Grafana's interpolation for our purposes: `$name` / `${name}` -> value; unknown names fail."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE_RE.sub(replace, expr)


def label_values_query(query: str) -> tuple[str, str]:
    """`label_values(metric{...}, label)` -> (series selector, label)."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group(1), match.group(2)

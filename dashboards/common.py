"""Shared parts of podbw's Grafana dashboards: variables, PromQL pieces, panel builders, layout.

Conventions (kubernetes-mixin's): variables `datasource`, `cluster`, `node`, `namespace`, `pod`;
throughput in bits per second (unit `bps`, `8 *` the byte rates podbw exports); `cluster` is
hidden unless the dashboards are generated for several clusters (the series carry no `cluster`
label then, and `cluster=~""` matches them). `node` and `cluster` come from the scrape config
(Kubernetes SD node name, external labels), never from podbw itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from grafanalib.core import (
    HIDE_VARIABLE,
    SHOW,
    Dashboard,
    DashboardLink,
    GridPos,
    Panel,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["podbw"]
JOB = "podbw"
"""Prometheus job name of the agent's scrape config (ServiceMonitor/PodMonitor); the alert
rules and the agent-up panels select `up{job="podbw"}`."""

TOP_N = 10
ALL = ".*"

AGENT = 'cluster=~"$cluster", node=~"$node"'
"""Selector of the agent's own series on the chosen node."""
PODS = AGENT + ', namespace=~"$namespace", pod=~"$pod"'
"""Selector of the chosen pods' series."""

RATE = "[$__rate_interval]"

DIRECTIONS = ("ingress", "egress")
DIRECTION_TITLE = {"ingress": "Ingress (into the pod)", "egress": "Egress (out of the pod)"}
_INTERFACE_SIDE = {"ingress": "receive", "egress": "transmit"}
"""Traffic into the pod is what its interfaces receive; podbw names directions from the pod."""

UNIT_BITS = "bps"
UNIT_RATIO = "percentunit"
UNIT_PACKETS = "pps"
UNIT_SECONDS = "s"
UNIT_BYTES = "bytes"
UNIT_COUNT = "short"
UNIT_OPS = "ops"

# ---- PromQL ---------------------------------------------------------------------------------


def interface_bytes(direction: str, selector: str = PODS) -> str:
    """Per-interface byte rate of the pods' interfaces for one direction (bytes/s)."""
    side = _INTERFACE_SIDE[direction]
    return f"rate(podbw_network_{side}_bytes_total{{{selector}}}{RATE})"


def mean_bits(direction: str, by: str = "namespace, pod", selector: str = PODS) -> str:
    """Mean throughput over the rate interval, bits/s, from the interface byte counters.

    Counters give the exact mean whatever the scrape interval; the sampled
    `podbw_throughput_bytes_per_second` gauge is only a 1 s mean at scrape time.
    """
    return f"8 * sum by ({by}) ({interface_bytes(direction, selector)})"


def mean_bits_by_direction(selector: str = PODS) -> str:
    """Both directions in one vector with a `direction` label (to join with the limits)."""
    parts = [
        f'label_replace({interface_bytes(d, selector)}, "direction", "{d}", "", "")' for d in DIRECTIONS
    ]
    return f"8 * sum by (namespace, pod, direction) ({parts[0]} or {parts[1]})"


def limit_bits(selector: str = PODS, by: str = "namespace, pod, direction") -> str:
    return f"8 * max by ({by}) (podbw_limit_rate_bytes_per_second{{{selector}}})"


def utilization(selector: str = PODS, by: str = "namespace, pod, direction") -> str:
    """Bytes through podbw's qdisc / its token rate: 1.0 means the bucket is drained (the limit
    is what holds the pod back). Both count link-layer bytes, so a saturating TCP flow nears 1."""
    return (
        f"sum by ({by}) (rate(podbw_qdisc_bytes_total{{{selector}}}{RATE}))"
        f" / max by ({by}) (podbw_limit_rate_bytes_per_second{{{selector}}})"
    )


def quantile(q: float, histogram: str, selector: str = AGENT) -> str:
    return f"histogram_quantile({q:g}, sum by (le) (rate({histogram}_bucket{{{selector}}}{RATE})))"


def histogram_mean(histogram: str, selector: str = AGENT) -> str:
    return (
        f"sum(rate({histogram}_sum{{{selector}}}{RATE}))"
        f" / sum(rate({histogram}_count{{{selector}}}{RATE}))"
    )


def state_count(state: str, selector: str = PODS) -> str:
    return f'sum(podbw_shaping_state{{{selector}, state="{state}"}})'


# ---- variables ------------------------------------------------------------------------------


def variables(*, multi_cluster: bool, node_all: bool, pods_multi: bool) -> Templating:
    """datasource, cluster, node, namespace, pod; each query narrowed by the ones before it."""

    def query_var(
        name: str, label: str, query: str, *, all_: bool = False, multi: bool = False, hide: int = SHOW
    ) -> Template:
        template = Template(
            name=name,
            label=label,
            query=query,
            dataSource=DATASOURCE,
            includeAll=all_,
            multi=multi,
            allValue=ALL if all_ else None,
            default="$__all" if all_ else None,
            refresh=2,  # on time range change: pods come and go
            hide=hide,
            sort=1,
        )
        if all_:
            # Grafana's own form of a selected "All" (grafanalib writes the raw value as text).
            value: Any = ["$__all"] if multi else "$__all"
            template._current = {"selected": True, "text": ["All"] if multi else "All", "value": value}
        return template

    return Templating(
        list=[
            Template(
                name="datasource",
                label="Data source",
                query="prometheus",
                type="datasource",
                default="default",
                hide=SHOW,
            ),
            query_var(
                "cluster",
                "Cluster",
                "label_values(podbw_build_info, cluster)",
                hide=SHOW if multi_cluster else HIDE_VARIABLE,
            ),
            query_var(
                "node",
                "Node",
                'label_values(podbw_build_info{cluster=~"$cluster"}, node)',
                all_=node_all,
            ),
            query_var(
                "namespace",
                "Namespace",
                f"label_values(podbw_pod_info{{{AGENT}}}, namespace)",
                all_=pods_multi,
                multi=pods_multi,
            ),
            query_var(
                "pod",
                "Pod",
                f'label_values(podbw_pod_info{{{AGENT}, namespace=~"$namespace"}}, pod)',
                all_=pods_multi,
                multi=pods_multi,
            ),
        ]
    )


# ---- panels ---------------------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False) -> Target:
    return Target(
        expr=expr,
        legendFormat=legend,
        refId=ref,
        instant=instant,
        format="table" if table else "time_series",
        datasource=DATASOURCE,
        intervalFactor=1,
    )


def targets(*pairs: tuple[str, str], instant: bool = False, table: bool = False) -> list[Target]:
    """(expr, legend) pairs with refIds A, B, C, ..."""
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant, table=table) for i, (expr, legend) in enumerate(pairs)
    ]


def thresholds(*steps: tuple[float | None, str]) -> list[dict[str, Any]]:
    return [{"value": value, "color": color} for value, color in steps]


def timeseries(
    title: str,
    description: str,
    queries: list[Target],
    unit: str,
    *,
    overrides: Sequence[dict[str, Any]] = (),
    steps: Sequence[tuple[float | None, str]] = (),
    stacked: bool = False,
    legend_calcs: Sequence[str] = ("mean", "max", "lastNotNull"),
    min_zero: bool = True,
) -> TimeSeries:
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=queries,
        unit=unit,
        fillOpacity=25 if stacked else 10,
        stacking={"mode": "normal", "group": "A"} if stacked else {},
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=list(legend_calcs),
        tooltipMode="multi",
        tooltipSort="desc",
        overrides=list(overrides),
        thresholds=thresholds(*steps) if steps else thresholds((None, "green")),
        thresholdsStyleMode="line" if steps else "off",
        valueMin=0 if min_zero else None,
        showPoints="never",
        maxDataPoints=None,  # Grafana's default: one point per pixel
    )


def stat(
    title: str,
    description: str,
    query: Target,
    unit: str,
    *,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    mappings: Sequence[dict[str, Any]] = (),
) -> Stat:
    return Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=[query],
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="none",
        colorMode="background",
        thresholds=thresholds(*steps),
        mappings=list(mappings),
        noValue="0",
    )


def table(
    title: str,
    description: str,
    queries: list[Target],
    unit: str,
    *,
    overrides: Sequence[dict[str, Any]] = (),
    transformations: Sequence[dict[str, Any]] = (),
    sort_by: str | None = None,
) -> Table:
    panel = Table(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=queries,
        unit=unit,
        overrides=list(overrides),
        transformations=list(transformations),
        filterable=True,
    )
    if sort_by is not None:
        panel.extraJson = {"options": {"sortBy": [{"displayName": sort_by, "desc": True}]}}
    return panel


def override(matcher_id: str, matcher: str, **properties: Any) -> dict[str, Any]:
    """Grafana field override: `byName` / `byFrameRefID` / `byRegexp` matcher, properties by id."""
    return {
        "matcher": {"id": matcher_id, "options": matcher},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in properties.items()],
    }


LIMIT_LINE = {
    "color": {"mode": "fixed", "fixedColor": "red"},
    "custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
    "custom.fillOpacity": 0,
    "custom.lineWidth": 2,
}


def limit_line_override(ref: str) -> dict[str, Any]:
    """Draw the configured limit (query `ref`) as a dashed red line, not a filled series."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [{"id": key, "value": value} for key, value in LIMIT_LINE.items()],
    }


# ---- layout ---------------------------------------------------------------------------------


@dataclass
class Section:
    """A dashboard row: a title, what it shows, and its panels as (panel, width, height)."""

    title: str
    description: str
    panels: list[tuple[Panel, int, int]] = field(default_factory=list)


def layout(sections: Sequence[Section]) -> list[Panel]:
    """Each section is a full-width row; its panels fill 24 columns left to right, then wrap."""
    out: list[Panel] = []
    y = 0
    for section in sections:
        out.append(RowPanel(title=section.title, description=section.description, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x = row_h = 0
        for panel, w, h in section.panels:
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            panel.gridPos = GridPos(h=h, w=w, x=x, y=y)
            out.append(panel)
            x += w
            row_h = max(row_h, h)
        y += row_h
    return out


def dashboard(
    *, title: str, uid: str, description: str, sections: Sequence[Section], templating: Templating, links_to: str
) -> Dashboard:
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=TAGS,
        timezone="browser",
        refresh="30s",
        time=Time("now-1h", "now"),
        editable=True,
        graphTooltip=1,  # shared crosshair
        templating=templating,
        links=[
            DashboardLink(
                title=links_to,
                type="dashboards",
                tags=TAGS,
                asDropdown=True,
                includeVars=True,
                keepTime=True,
                icon="dashboard",
            )
        ],
        panels=layout(sections),
    ).auto_panel_ids()

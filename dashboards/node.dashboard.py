"""Grafana dashboard "podbw / Node": which pods use their bandwidth, drop, or are not shaped."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common as c  # noqa: E402
from grafanalib.core import Dashboard  # noqa: E402

UID = "podbw-node"
POD_DASHBOARD_URL = (
    "/d/podbw-pod/podbw-pod?${__url_time_range}&var-datasource=${datasource}&var-cluster=${cluster}"
    "&var-node=${node}&var-namespace=${__data.fields.namespace}&var-pod=${__data.fields.pod}"
)


def overview() -> c.Section:
    up = c.target(f'max(up{{job="{c.JOB}", {c.AGENT}}})')
    up_mappings = [
        {
            "type": "value",
            "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}},
        }
    ]
    warn = ((None, "green"), (1, "orange"))
    return c.Section(
        "Overview",
        "The agent and the shaping state of the selected pods right now.",
        [
            (c.stat("Agent", f'Whether Prometheus can scrape podbw on this node (up{{job="{c.JOB}"}}).', up,
                    c.UNIT_COUNT, steps=((None, "red"), (1, "green")), mappings=up_mappings), 4, 4),
            (c.stat("Pods", "Pods podbw samples on this node (podbw_pods).",
                    c.target(f"sum(podbw_pods{{{c.AGENT}}})"), c.UNIT_COUNT), 4, 4),
            (c.stat("Limited directions", "Pod directions (ingress, egress) with podbw's limit in the kernel.",
                    c.target(c.state_count("applied")), c.UNIT_COUNT), 4, 4),
            (c.stat("Invalid annotations",
                    "Pod directions whose bandwidth annotation is malformed or out of range (1k..1P): left "
                    "unshaped. The agent log names the pod and key.",
                    c.target(c.state_count("invalid")), c.UNIT_COUNT, steps=warn), 4, 4),
            (c.stat("Foreign qdiscs",
                    "Pod directions where a root qdisc podbw did not create sits where its limit would go "
                    "(e.g. the CNI bandwidth plugin): podbw leaves it alone unless --take-over-foreign.",
                    c.target(c.state_count("foreign")), c.UNIT_COUNT, steps=warn), 4, 4),
            (c.stat("Shaping errors",
                    "Pod directions where applying the limit failed (netlink error, device gone); podbw "
                    "retries on the next resync.",
                    c.target(c.state_count("error")), c.UNIT_COUNT, steps=((None, "green"), (1, "red"))), 4, 4),
        ],
    )


def throughput() -> c.Section:
    ranked = c.table(
        "Pods ranked by throughput",
        "Mean throughput of each pod and direction over the rate interval (from interface counters), "
        "its configured limit, and how much of the limit its qdisc used. Click a pod to open its "
        "dashboard.",
        c.targets(
            (c.mean_bits_by_direction(), ""),
            (c.limit_bits(), ""),
            (c.utilization(), ""),
            instant=True,
            table=True,
        ),
        c.UNIT_BITS,
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {
                        "namespace": 0, "pod": 1, "direction": 2, "Value #A": 3, "Value #B": 4, "Value #C": 5,
                    },
                    "renameByName": {"Value #A": "Throughput", "Value #B": "Limit", "Value #C": "Limit utilization"},
                },
            },
        ],
        overrides=[
            c.override("byName", "Limit utilization", unit=c.UNIT_RATIO, min=0, max=1,
                       custom__cellOptions={"type": "gauge", "mode": "gradient"},
                       thresholds={
                           "mode": "absolute",
                           "steps": c.thresholds((None, "green"), (0.8, "orange"), (0.95, "red")),
                       }),
            c.override("byName", "pod", links=[{"title": "podbw / Pod", "url": POD_DASHBOARD_URL}]),
        ],
        sort_by="Throughput",
    )
    top = c.timeseries(
        "Top pods by throughput",
        f"The {c.TOP_N} pods with the highest mean throughput per direction, in bits per second, "
        "from the pods' interface counters.",
        c.targets(
            (f"topk({c.TOP_N}, {c.mean_bits('ingress')})", "{{namespace}}/{{pod}} ingress"),
            (f"topk({c.TOP_N}, {c.mean_bits('egress')})", "{{namespace}}/{{pod}} egress"),
        ),
        c.UNIT_BITS,
    )
    used = c.timeseries(
        "Limit utilization",
        f"The {c.TOP_N} pod directions using most of their limit: bytes through podbw's qdisc over "
        "its token rate. Near 100 % the limit is what holds the pod back (alert above 95 % for 10 min).",
        c.targets((f"topk({c.TOP_N}, {c.utilization()})", "{{namespace}}/{{pod}} {{direction}}")),
        c.UNIT_RATIO,
        steps=((None, "green"), (0.95, "red")),
    )
    peak = c.timeseries(
        "Peak throughput (1 s bursts)",
        f"The {c.TOP_N} highest peaks: the largest 1 s mean the agent sampled over its trailing peak "
        "window. Bursts a 15 s or 30 s scrape cannot see in the mean.",
        c.targets((
            f"topk({c.TOP_N}, 8 * max by (namespace, pod, direction) "
            f"(podbw_throughput_peak_bytes_per_second{{{c.PODS}}}))",
            "{{namespace}}/{{pod}} {{direction}}",
        )),
        c.UNIT_BITS,
    )
    total = c.timeseries(
        "Total pod throughput",
        "Sum of the selected pods' mean throughput per direction, in bits per second.",
        c.targets(
            (c.mean_bits("ingress", by="node"), "ingress"),
            (c.mean_bits("egress", by="node"), "egress"),
        ),
        c.UNIT_BITS,
    )
    return c.Section(
        "Throughput",
        "Pod throughput against the configured limits (bits per second).",
        [(ranked, 24, 10), (top, 12, 9), (used, 12, 9), (peak, 12, 8), (total, 12, 8)],
    )


def qdiscs() -> c.Section:
    def per_pod(counter: str) -> str:
        return (
            f"topk({c.TOP_N}, sum by (namespace, pod, direction) "
            f"(rate(podbw_qdisc_{counter}_total{{{c.PODS}}}{c.RATE})))"
        )

    return c.Section(
        "Qdiscs",
        "Statistics of the token bucket filters podbw installed.",
        [
            (c.timeseries(
                "Qdisc drops per pod",
                f"Packets podbw's qdisc dropped per second, {c.TOP_N} highest: the queue was full. "
                "Occasional drops are how TCP finds the limit; sustained drops mean the queue limit "
                "(podbw.io/*-latency) is short for the traffic.",
                c.targets((per_pod("drops"), "{{namespace}}/{{pod}} {{direction}}")),
                c.UNIT_PACKETS,
            ), 12, 8),
            (c.timeseries(
                "Qdisc overlimits per pod",
                f"Times per second a packet had to wait for tokens, {c.TOP_N} highest: the limit was "
                "holding traffic back.",
                c.targets((per_pod("overlimits"), "{{namespace}}/{{pod}} {{direction}}")),
                c.UNIT_PACKETS,
            ), 12, 8),
        ],
    )


STATE_COLORS = {"applied": "green", "unlimited": "blue", "invalid": "orange", "foreign": "yellow", "error": "red"}


def states() -> c.Section:
    by_state = c.timeseries(
        "Shaping states",
        "Pod directions per shaping state: applied (limit in the kernel), unlimited (no annotation), "
        "invalid (bad annotation), foreign (another qdisc is there), error (applying failed).",
        c.targets((f"sum by (state) (podbw_shaping_state{{{c.PODS}}})", "{{state}}")),
        c.UNIT_COUNT,
        stacked=True,
        legend_calcs=("lastNotNull",),
        overrides=[
            c.override("byName", state, color={"mode": "fixed", "fixedColor": color})
            for state, color in STATE_COLORS.items()
        ],
    )
    problems = c.table(
        "Directions not shaped as requested",
        "Every pod direction in state invalid, foreign or error now. Invalid: fix the annotation. "
        "Foreign: remove the other qdisc or run podbw with --take-over-foreign. Error: see the agent log.",
        c.targets(
            (f'podbw_shaping_state{{{c.PODS}, state=~"invalid|foreign|error"}} == 1', ""),
            instant=True,
            table=True,
        ),
        c.UNIT_COUNT,
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True, "Value": True, "__name__": True, "job": True, "instance": True,
                        "cluster": True, "node": True,
                    },
                    "indexByName": {"namespace": 0, "pod": 1, "direction": 2, "state": 3},
                },
            }
        ],
    )
    return c.Section(
        "Shaping states",
        "Which pod directions podbw could not shape as their annotations ask.",
        [(by_state, 12, 8), (problems, 12, 8)],
    )


def agent() -> c.Section:
    sample = c.timeseries(
        "Sample duration",
        "Time one sampling pass over all pods takes (it runs every sample interval, 1 s by default); "
        "near the interval the sampler falls behind.",
        c.targets(
            (c.quantile(0.99, "podbw_sample_duration_seconds"), "p99"),
            (c.quantile(0.5, "podbw_sample_duration_seconds"), "p50"),
            (c.histogram_mean("podbw_sample_duration_seconds"), "mean"),
        ),
        c.UNIT_SECONDS,
    )
    reconcile = c.timeseries(
        "Reconcile latency",
        "Time from a pod's network namespace being seen to its limits being in the kernel. Empty "
        "while no pod starts.",
        c.targets(
            (c.quantile(0.99, "podbw_reconcile_latency_seconds"), "p99"),
            (c.quantile(0.5, "podbw_reconcile_latency_seconds"), "p50"),
        ),
        c.UNIT_SECONDS,
    )
    errors = c.timeseries(
        "Errors",
        "Invalid annotation values found (by key), and failed qdisc changes (by operation; 0 while "
        "none failed), per rate interval.",
        c.targets(
            (f"sum by (key) (increase(podbw_annotation_errors_total{{{c.AGENT}}}{c.RATE}))", "invalid {{key}}"),
            (
                f'sum by (op) (increase(podbw_shaping_operations_total{{{c.AGENT}, result="error"}}{c.RATE}))'
                f" or 0 * sum by (op) (increase(podbw_shaping_operations_total{{{c.AGENT}}}{c.RATE}))",
                "failed {{op}}",
            ),
        ),
        c.UNIT_COUNT,
    )
    pods = c.timeseries(
        "Pods",
        "Pods the agent samples on this node.",
        c.targets((f"sum(podbw_pods{{{c.AGENT}}})", "pods")),
        c.UNIT_COUNT,
        legend_calcs=("lastNotNull", "max"),
    )
    operations = c.timeseries(
        "Shaping operations",
        "Qdisc changes per second by operation and result: apply after a pod starts or its limit "
        "changes, remove when a limit goes away. A steady stream means something keeps undoing podbw.",
        c.targets((
            f"sum by (op, result) (rate(podbw_shaping_operations_total{{{c.AGENT}}}{c.RATE}))",
            "{{op}} {{result}}",
        )),
        c.UNIT_OPS,
    )
    sources = c.timeseries(
        "Discovery sources",
        "1 while a source of pods works: cri (the runtime; shaping needs it), kubernetes (the API's "
        "current annotations, namespace defaults and pod Events; CRI alone keeps shaping while it "
        "is 0), netns (only with --cri-endpoint none).",
        c.targets((f"max by (source) (podbw_discovery_up{{{c.AGENT}}})", "{{source}}")),
        c.UNIT_COUNT,
        legend_calcs=("lastNotNull", "min"),
    )
    events = c.timeseries(
        "Pod Events",
        "Pod Events podbw raised per rate interval, by what became of them: ok (posted), error (the API "
        "refused or failed), rate_limited, dropped, no_api. Empty while none was raised.",
        c.targets((
            f"sum by (result) (increase(podbw_pod_events_total{{{c.AGENT}}}{c.RATE}))",
            "{{result}}",
        )),
        c.UNIT_COUNT,
    )
    return c.Section(
        "Agent",
        "Health of the podbw agent on this node.",
        [(sample, 8, 8), (reconcile, 8, 8), (errors, 8, 8), (pods, 12, 7), (operations, 12, 7),
         (sources, 12, 7), (events, 12, 7)],
    )


def build(multi_cluster: bool = False) -> Dashboard:
    return c.dashboard(
        title="podbw / Node",
        uid=UID,
        description="Per-pod bandwidth on one node: throughput against limits, qdisc drops, shaping "
        "states and the podbw agent's health.",
        sections=[overview(), throughput(), qdiscs(), states(), agent()],
        templating=c.variables(multi_cluster=multi_cluster, node_all=False, pods_multi=True),
        links_to="podbw",
    )


dashboard = build()

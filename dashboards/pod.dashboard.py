"""Grafana dashboard "podbw / Pod": one pod's traffic per direction against its limit."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common as c  # noqa: E402
from grafanalib.core import Dashboard  # noqa: E402

UID = "podbw-pod"


def on(direction: str) -> str:
    return f'{c.PODS}, direction="{direction}"'


def overview() -> c.Section:
    state = c.stat(
        "Shaping state",
        "Per direction: applied (podbw's limit is in the kernel), unlimited (no annotation), invalid "
        "(bad annotation value), foreign (another qdisc is in the way), error (applying failed).",
        c.target(f"podbw_shaping_state{{{c.PODS}}} == 1", "{{direction}}: {{state}}"),
        c.UNIT_COUNT,
        steps=((None, "blue"),),
    )
    state.textMode = "name"
    panels = [(state, 8, 4)]
    for direction in c.DIRECTIONS:
        limit = c.stat(
            f"{direction.capitalize()} limit",
            f"The rate limit podbw applied to {direction} traffic "
            f"(kubernetes.io/{direction}-bandwidth), in bits per second.",
            c.target(c.limit_bits(on(direction), by="namespace, pod")),
            c.UNIT_BITS,
            steps=((None, "blue"),),
        )
        limit.noValue = "unlimited"
        panels.append((limit, 4, 4))
    bucket = c.stat(
        "Token bucket",
        "Burst (bucket size) and queue limit podbw applied per direction, in bytes: the burst lets "
        "short peaks pass at line rate, the queue limit bounds the added latency.",
        c.target(f"max by (direction) (podbw_limit_burst_bytes{{{c.PODS}}})", "{{direction}} burst"),
        c.UNIT_BYTES,
        steps=((None, "blue"),),
    )
    bucket.targets.append(
        c.target(f"max by (direction) (podbw_limit_queue_bytes{{{c.PODS}}})", "{{direction}} queue", "B")
    )
    panels.append((bucket, 8, 4))
    return c.Section("Overview", "The pod's limits and shaping state now.", panels)


def direction_section(direction: str) -> c.Section:
    sel = on(direction)
    traffic = c.timeseries(
        f"Throughput vs limit ({direction})",
        f"Mean {direction} throughput over the rate interval (interface counters), the highest 1 s "
        "mean the agent sampled in its trailing peak window (bursts a slow scrape cannot see), and "
        "the configured limit (dashed), in bits per second.",
        c.targets(
            (c.mean_bits(direction), "mean"),
            (f"8 * max by (namespace, pod) (podbw_throughput_peak_bytes_per_second{{{sel}}})", "peak (1 s)"),
            (c.limit_bits(sel, by="namespace, pod"), "limit"),
        ),
        c.UNIT_BITS,
        overrides=[c.limit_line_override("C")],
    )
    used = c.timeseries(
        f"Limit utilization ({direction})",
        "Bytes through podbw's qdisc over its token rate: near 100 % the limit is what holds the pod "
        "back (the saturation alert fires above 95 % for 10 min).",
        c.targets((c.utilization(sel, by="namespace, pod"), "utilization")),
        c.UNIT_RATIO,
        steps=((None, "green"), (0.95, "red")),
    )
    drops = c.timeseries(
        f"Qdisc drops and overlimits ({direction})",
        "Packets per second podbw's qdisc dropped (queue full) and overlimit events (a packet had to "
        "wait for tokens).",
        c.targets(
            (f"sum by (namespace, pod) (rate(podbw_qdisc_drops_total{{{sel}}}{c.RATE}))", "drops"),
            (f"sum by (namespace, pod) (rate(podbw_qdisc_overlimits_total{{{sel}}}{c.RATE}))", "overlimits"),
        ),
        c.UNIT_PACKETS,
        overrides=[c.override("byName", "drops", color={"mode": "fixed", "fixedColor": "red"})],
    )
    backlog = c.timeseries(
        f"Qdisc backlog ({direction})",
        "Bytes and packets waiting in podbw's qdisc at the sample time, with the queue limit "
        "(dashed): a full queue drops.",
        c.targets(
            (f"sum by (namespace, pod) (podbw_qdisc_backlog_bytes{{{sel}}})", "bytes"),
            (f"sum by (namespace, pod) (podbw_qdisc_backlog_packets{{{sel}}})", "packets"),
            (f"max by (namespace, pod) (podbw_limit_queue_bytes{{{sel}}})", "queue limit"),
        ),
        c.UNIT_BYTES,
        overrides=[
            c.override("byFrameRefID", "B", unit=c.UNIT_COUNT, custom__axisPlacement="right"),
            c.limit_line_override("C"),
        ],
    )
    return c.Section(
        c.DIRECTION_TITLE[direction],
        f"Traffic {'into' if direction == 'ingress' else 'out of'} the pod and podbw's qdisc "
        f"limiting it.",
        [(traffic, 12, 9), (used, 12, 9), (drops, 12, 8), (backlog, 12, 8)],
    )


def interfaces() -> c.Section:
    def both(what: str) -> list:
        return c.targets(
            (f"sum by (interface) (rate(podbw_network_receive_{what}_total{{{c.PODS}}}{c.RATE}))",
             "{{interface}} receive"),
            (f"sum by (interface) (rate(podbw_network_transmit_{what}_total{{{c.PODS}}}{c.RATE}))",
             "{{interface}} transmit"),
        )

    return c.Section(
        "Interfaces",
        "The pod's interfaces as seen inside the pod (receive = ingress, transmit = egress).",
        [
            (c.timeseries("Packets", "Packets per second the pod's interfaces received and transmitted.",
                          both("packets"), c.UNIT_PACKETS), 8, 8),
            (c.timeseries("Interface errors", "Receive and transmit errors per second on the pod's interfaces.",
                          both("errors"), c.UNIT_PACKETS), 8, 8),
            (c.timeseries("Interface drops",
                          "Packets per second the pod's interfaces dropped (not the qdisc's drops).",
                          both("packets_dropped"), c.UNIT_PACKETS), 8, 8),
        ],
    )


def build(multi_cluster: bool = False) -> Dashboard:
    return c.dashboard(
        title="podbw / Pod",
        uid=UID,
        description="One pod's bandwidth per direction: mean and peak throughput against its limit, "
        "qdisc drops, overlimits and backlog, interface packets, errors and drops.",
        sections=[overview(), *(direction_section(d) for d in c.DIRECTIONS), interfaces()],
        templating=c.variables(multi_cluster=multi_cluster, node_all=True, pods_multi=False),
        links_to="podbw",
    )


dashboard = build()

"""`podbw top`'s pure parts: /metrics text and Snapshots into rows, and the rendered tables."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from agent.cli.top_render import format_rate, plain_bar, render_plain, render_rich
from agent.cli.top_rows import (
    DirectionRow,
    MetricsFormatError,
    PodRow,
    rows_from_metrics_text,
    rows_from_snapshot,
    sort_rows,
)
from agent.cli.top_screen import PlainScreen, TopViewer
from agent.cli.top_sources import MetricsSource, SourceError, SourceUnreachable
from agent.lab.agent_process import applied_limits, shaping_states
from agent.lab.demo_scenario import FLOWS, PODS, expected_limits, shaped_pods
from agent.metrics.collector import PodbwCollector
from agent.model.direction import Direction, ShapingState
from agent.model.health import HealthRecorder
from agent.model.pod import SOURCE_NETNS, Pod
from agent.model.kernel import Link, Qdisc
from agent.model.snapshot import DirectionSample, PodSample, Snapshot
from agent.model.status import DirectionStatus, PodShapingStatus
from agent.model.tbf_params import TbfParams

# An agent's answer, trimmed to the families top reads plus some it must skip.
EXPOSITION = """\
# HELP podbw_limit_rate_bytes_per_second Rate limit podbw applied.
# TYPE podbw_limit_rate_bytes_per_second gauge
podbw_limit_rate_bytes_per_second{direction="ingress",namespace="shop",pod="web"} 2.5e+06
podbw_limit_rate_bytes_per_second{direction="egress",namespace="shop",pod="web"} 1.25e+06
# HELP podbw_throughput_bytes_per_second Pod throughput.
# TYPE podbw_throughput_bytes_per_second gauge
podbw_throughput_bytes_per_second{direction="ingress",namespace="shop",pod="web"} 2.4e+06
podbw_throughput_bytes_per_second{direction="egress",namespace="shop",pod="web"} 625000.0
podbw_throughput_bytes_per_second{direction="ingress",namespace="jobs",pod="broken"} 1.0e+06
podbw_throughput_bytes_per_second{direction="egress",namespace="jobs",pod="broken"} 0.0
# HELP podbw_throughput_peak_bytes_per_second Peak.
# TYPE podbw_throughput_peak_bytes_per_second gauge
podbw_throughput_peak_bytes_per_second{direction="ingress",namespace="shop",pod="web"} 2.6e+06
podbw_throughput_peak_bytes_per_second{direction="egress",namespace="shop",pod="web"} 7.0e+05
podbw_throughput_peak_bytes_per_second{direction="ingress",namespace="jobs",pod="broken"} 1.5e+06
podbw_throughput_peak_bytes_per_second{direction="egress",namespace="jobs",pod="broken"} 0.0
# HELP podbw_qdisc_drops_total Drops.
# TYPE podbw_qdisc_drops_total counter
podbw_qdisc_drops_total{direction="ingress",kind="tbf",namespace="shop",pod="web"} 12.0
podbw_qdisc_drops_total{direction="ingress",kind="fq_codel",namespace="shop",pod="web"} 3.0
podbw_qdisc_drops_total{direction="egress",kind="tbf",namespace="shop",pod="web"} 0.0
# HELP podbw_qdisc_bytes_total Bytes.
# TYPE podbw_qdisc_bytes_total counter
podbw_qdisc_bytes_total{direction="ingress",kind="tbf",namespace="shop",pod="web"} 9.0e+08
# HELP podbw_shaping_state State.
# TYPE podbw_shaping_state gauge
podbw_shaping_state{direction="ingress",namespace="shop",pod="web",state="unlimited"} 0.0
podbw_shaping_state{direction="ingress",namespace="shop",pod="web",state="applied"} 1.0
podbw_shaping_state{direction="egress",namespace="shop",pod="web",state="applied"} 1.0
podbw_shaping_state{direction="egress",namespace="shop",pod="web",state="error"} 0.0
podbw_shaping_state{direction="ingress",namespace="jobs",pod="broken",state="invalid"} 1.0
podbw_shaping_state{direction="ingress",namespace="jobs",pod="broken",state="applied"} 0.0
podbw_shaping_state{direction="egress",namespace="jobs",pod="broken",state="unlimited"} 1.0
# HELP podbw_pod_info One series per pod.
# TYPE podbw_pod_info gauge
podbw_pod_info{host_interface="veth1",namespace="shop",netns="/var/run/netns/a",pod="web",uid="u1"} 1.0
podbw_pod_info{host_interface="veth2",namespace="jobs",netns="/var/run/netns/b",pod="broken",uid="u2"} 1.0
podbw_pod_info{host_interface="",namespace="jobs",netns="/var/run/netns/c",pod="idle",uid="u3"} 1.0
# HELP podbw_pods Pods.
# TYPE podbw_pods gauge
podbw_pods 3.0
"""

WEB_ROW = PodRow(
    "shop",
    "web",
    {
        "ingress": DirectionRow("applied", 2_500_000.0, 2_400_000.0, 2_600_000.0, 15),
        "egress": DirectionRow("applied", 1_250_000.0, 625_000.0, 700_000.0, 0),
    },
)
BROKEN_ROW = PodRow(
    "jobs",
    "broken",
    {
        "ingress": DirectionRow("invalid", None, 1_000_000.0, 1_500_000.0, None),
        "egress": DirectionRow("unlimited", None, 0.0, 0.0, None),
    },
)
IDLE_ROW = PodRow("jobs", "idle", {"ingress": DirectionRow(), "egress": DirectionRow()})


def test_exposition_becomes_rows_busiest_first() -> None:
    assert rows_from_metrics_text(EXPOSITION) == [WEB_ROW, BROKEN_ROW, IDLE_ROW]


def test_utilization_is_throughput_over_the_limit() -> None:
    assert WEB_ROW.direction("ingress").utilization == pytest.approx(0.96)
    assert WEB_ROW.direction("egress").utilization == pytest.approx(0.5)
    assert BROKEN_ROW.direction("ingress").utilization is None


@pytest.mark.parametrize(
    "text",
    [
        "<html><body>502 Bad Gateway</body></html>",
        "# TYPE node_load1 gauge\nnode_load1 0.5\n",
    ],
)
def test_an_answer_that_is_not_podbw_is_refused(text: str) -> None:
    with pytest.raises(MetricsFormatError):
        rows_from_metrics_text(text)


def test_sort_is_by_total_throughput_then_name() -> None:
    quiet_b = PodRow("b", "x", {"ingress": DirectionRow(throughput_bytes_per_s=1.0)})
    quiet_a = PodRow("a", "x", {"egress": DirectionRow(throughput_bytes_per_s=1.0)})
    busy = PodRow("z", "z", {"ingress": DirectionRow(throughput_bytes_per_s=5.0)})
    assert [r.key for r in sort_rows([quiet_b, quiet_a, busy])] == ["z/z", "a/x", "b/x"]


# ---- Snapshot -> rows must equal Snapshot -> /metrics -> rows -----------------------------

PARAMS_20M = TbfParams(rate_bytes_per_s=2_500_000, burst_bytes=125_000, limit_bytes=131_250)
PARAMS_10M = TbfParams(rate_bytes_per_s=1_250_000, burst_bytes=62_500, limit_bytes=65_625)


def _pod(sandbox_id: str, namespace: str, name: str, **kw: object) -> Pod:
    return Pod(sandbox_id, f"uid-{sandbox_id}", namespace, name, f"/var/run/netns/{sandbox_id}", **kw)


def _tbf(ifindex: int, drops: int) -> Qdisc:
    return Qdisc(ifindex=ifindex, handle=0x50620000, parent=0xFFFFFFFF, kind="tbf", drops=drops)


def _sample(pod: Pod, states: dict[Direction, DirectionStatus], directions: dict[Direction, DirectionSample]) -> PodSample:
    return PodSample(pod, PodShapingStatus(pod.sandbox_id, "veth0", 2, states), (Link(2, "eth0"),), directions)


SNAPSHOT = Snapshot(
    taken_at_monotonic_s=10.0,
    interval_s=1.0,
    sample_duration_s=0.01,
    pods=(
        _sample(
            _pod("s1", "shop", "web"),
            {
                Direction.INGRESS: DirectionStatus(ShapingState.APPLIED, PARAMS_20M, "veth0"),
                Direction.EGRESS: DirectionStatus(ShapingState.APPLIED, PARAMS_10M, "eth0", True),
            },
            {
                Direction.INGRESS: DirectionSample(_tbf(9, 41), 2_450_000.25, 2_600_000.0),
                Direction.EGRESS: DirectionSample(_tbf(2, 0), 1_000_000.0, 1_200_000.0),
            },
        ),
        _sample(
            _pod("s2", "jobs", "odd"),
            {
                # Requested but not in the kernel: no limit shown, as /metrics exports none.
                Direction.INGRESS: DirectionStatus(ShapingState.FOREIGN, PARAMS_20M, "veth3", False, "htb 1:"),
                Direction.EGRESS: DirectionStatus(ShapingState.ERROR, PARAMS_10M, "eth0", True, "gone"),
            },
            {
                Direction.INGRESS: DirectionSample(None, 3_000_000.0, 3_000_000.0),
                Direction.EGRESS: DirectionSample(None, 10.0, 20.0),
            },
        ),
        _sample(
            _pod("bare-1", "", "bare-1", source=SOURCE_NETNS),
            {},
            {Direction.INGRESS: DirectionSample(None, 0.0, 0.0), Direction.EGRESS: DirectionSample(None, 0.0, 0.0)},
        ),
    ),
)


def _exposition(snapshot: Snapshot) -> str:
    registry = CollectorRegistry()
    registry.register(PodbwCollector(lambda: snapshot, HealthRecorder().data, version="test"))
    return generate_latest(registry).decode()


def test_snapshot_rows_equal_the_rows_of_its_exposition() -> None:
    local = rows_from_snapshot(SNAPSHOT)
    assert rows_from_metrics_text(_exposition(SNAPSHOT)) == local
    assert [row.key for row in local] == ["shop/web", "jobs/odd", "bare-1"]
    web, odd = local[0], local[1]
    assert odd.direction("ingress") == DirectionRow("foreign", None, 3_000_000.0, 3_000_000.0, None)
    assert odd.direction("egress").state == "error"
    assert web.direction("ingress").limit_bytes_per_s == 2_500_000.0
    assert web.direction("ingress").qdisc_drops == 41
    assert local[2].direction("ingress").state == ""


# ---- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bytes_per_s", "text"),
    [
        (None, "-"),
        (0.0, "0 bit/s"),
        (100.0, "800 bit/s"),
        (2_500_000.0, "20.0 Mbit/s"),
        (5_000_000.0, "40.0 Mbit/s"),
        (1_250.0, "10.0 kbit/s"),
        (125_000_000.0, "1.0 Gbit/s"),
        (1.25e12, "10.0 Tbit/s"),
    ],
)
def test_rates_are_shown_in_bits_like_the_annotations(bytes_per_s: float | None, text: str) -> None:
    assert format_rate(bytes_per_s) == text


@pytest.mark.parametrize(
    ("utilization", "text"),
    [(None, "-"), (0.0, "[..........]   0%"), (0.5, "[#####.....]  50%"), (1.3, "[##########] 130%")],
)
def test_plain_bar(utilization: float | None, text: str) -> None:
    assert plain_bar(utilization) == text


def test_plain_table() -> None:
    assert render_plain([WEB_ROW, BROKEN_ROW, IDLE_ROW], title="podbw top | test") == (
        "podbw top | test\n"
        "POD          DIR      STATE      LIMIT        NOW          PEAK         UTIL               DROPS\n"
        "shop/web     ingress  applied    20.0 Mbit/s  19.2 Mbit/s  20.8 Mbit/s  [##########]  96%  15\n"
        "shop/web     egress   applied    10.0 Mbit/s  5.0 Mbit/s   5.6 Mbit/s   [#####.....]  50%  0\n"
        "jobs/broken  ingress  invalid    -            8.0 Mbit/s   12.0 Mbit/s  -                  -\n"
        "jobs/broken  egress   unlimited  -            0 bit/s      0 bit/s      -                  -\n"
        "jobs/idle    ingress  -          -            0 bit/s      0 bit/s      -                  -\n"
        "jobs/idle    egress   -          -            0 bit/s      0 bit/s      -                  -\n"
    )


def test_plain_table_without_pods_says_so() -> None:
    assert render_plain([]).splitlines() == ["POD  DIR  STATE  LIMIT  NOW  PEAK  UTIL  DROPS", "(no pods)"]


def test_rich_table_names_each_pod_once_and_shows_events() -> None:
    console = Console(record=True, width=140, color_system=None)
    console.print(render_rich([WEB_ROW, BROKEN_ROW], title="live", footer=["12:00:00  limit changed"]))
    text = console.export_text()
    assert text.count("shop/web") == 1
    assert "20.0 Mbit/s" in text and "invalid" in text and "96%" in text
    assert text.rstrip().endswith("12:00:00  limit changed")


# ---- screens and the viewer ---------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class _Source:
    description = "fake"

    def __init__(self) -> None:
        self.answers: list[list[PodRow] | Exception] = []

    def rows(self) -> list[PodRow]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_plain_screen_prints_a_table_every_few_seconds_or_when_forced() -> None:
    out, clock = io.StringIO(), _Clock()
    screen = PlainScreen(out, every_s=3.0, clock=clock)
    for now_s in (0.0, 1.0, 2.0, 3.0, 4.0):
        clock.now_s = now_s
        screen.show([WEB_ROW], f"t={now_s:g}")
    clock.now_s = 4.5
    screen.show([WEB_ROW], "forced", force=True)
    screen.event("something happened")
    titles = [line for line in out.getvalue().splitlines() if line.startswith(("t=", "forced"))]
    assert titles == ["t=0", "t=3", "forced"]
    assert out.getvalue().rstrip().endswith("something happened")


def test_viewer_keeps_the_last_rows_when_a_fetch_fails_and_says_why() -> None:
    source, out = _Source(), io.StringIO()
    source.answers = [[WEB_ROW], SourceError("http://x/metrics: HTTP 500 oops")]
    viewer = TopViewer(source, PlainScreen(out))
    viewer.refresh()
    assert viewer.limit_bytes_per_s("shop/web", "ingress") == 2_500_000.0
    viewer.refresh()
    assert viewer.rows == [WEB_ROW]
    assert "ERROR: http://x/metrics: HTTP 500 oops" in out.getvalue().splitlines()[-4]
    assert viewer.limit_bytes_per_s("shop/api", "ingress") is None


# ---- MetricsSource over loopback ----------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, object]]]:
    """A loopback server answering GETs with `reply["status"]` and `reply["body"]`."""
    reply: dict[str, object] = {"status": 200, "body": EXPOSITION}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
            body = str(reply["body"]).encode()
            self.send_response(int(reply["status"]))  # type: ignore[arg-type]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", reply
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_metrics_source_reads_rows_and_tells_errors_apart(http_server: tuple[str, dict[str, object]]) -> None:
    url, reply = http_server
    assert MetricsSource(url).rows() == [WEB_ROW, BROKEN_ROW, IDLE_ROW]
    reply["status"] = 503
    with pytest.raises(SourceError, match="HTTP 503") as err:
        MetricsSource(url).rows()
    assert not isinstance(err.value, SourceUnreachable)
    reply.update(status=200, body="hello")
    with pytest.raises(SourceError, match="not a Prometheus exposition"):
        MetricsSource(url).rows()


def test_metrics_source_unreachable_when_nothing_listens() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(SourceUnreachable):
            MetricsSource(f"http://127.0.0.1:{port}/metrics", timeout_s=2.0).rows()


# ---- the demo's scenario ------------------------------------------------------------------


def test_demo_waits_for_the_limits_its_annotations_ask_for() -> None:
    assert expected_limits() == {
        ("shop/web", "ingress"),
        ("shop/web", "egress"),
        ("shop/api", "ingress"),
        ("shop/cart", "egress"),
    }
    assert shaped_pods() == ["shop/web", "shop/api", "shop/cart", "jobs/batch", "jobs/broken"]
    assert applied_limits(EXPOSITION) == {("shop/web", "ingress"), ("shop/web", "egress")}
    assert shaping_states(EXPOSITION) == {
        ("shop/web", "ingress"): "applied",
        ("shop/web", "egress"): "applied",
        ("jobs/broken", "ingress"): "invalid",
        ("jobs/broken", "egress"): "unlimited",
    }


def test_demo_flows_run_between_its_own_pods_on_distinct_ports() -> None:
    keys = {spec.key for spec in PODS if not spec.host_network}
    assert all(flow.client in keys and flow.server in keys and flow.client != flow.server for flow in FLOWS)
    assert len({(flow.server, flow.port) for flow in FLOWS}) == len(FLOWS)

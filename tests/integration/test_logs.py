"""The agent's logs as a log pipeline reads them (issue 15, "Logs"): with `--log.format json`
every line of stderr is one JSON object, and the line about a pod carries its fields, even when
the pod's annotation value tries to forge a line of its own."""

from __future__ import annotations

import json

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

INGRESS = "kubernetes.io/ingress-bandwidth"
FORGED = '10M\n{"level":"ERROR","msg":"forged","namespace":"jobs","pod":"victim"}\nlevel=ERROR pod=victim'


def test_json_logs_parse_line_by_line_with_the_pods_fields(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("broken", "jobs", {INGRESS: FORGED}), PodSpec("victim", "jobs", {INGRESS: "10M"})])
    agent = agent_factory(lab, ["--log.format", "json"])
    for pod, state in (("broken", "invalid"), ("victim", "applied")):
        wait_for(
            lambda p=pod, s=state: agent.sample(
                "podbw_shaping_state", namespace="jobs", pod=p, direction="ingress", state=s
            ) == 1,
            10.0,
            what=f"jobs/{pod} ingress {state}",
        )
    assert agent.stop() == 0  # the stop's own lines are parsed too

    lines = agent.log_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
    assert records and all(list(r)[:4] == ["time", "level", "source", "msg"] for r in records), lines
    assert any(r["msg"].startswith("podbw ") and "running" in r["msg"] for r in records)

    about_broken = [r for r in records if r.get("pod") == "broken"]
    assert len(about_broken) == 1, about_broken
    (line,) = about_broken
    assert line["level"] == "ERROR" and line["source"].startswith("agent/shaping/")
    assert (line["namespace"], line["direction"], line["annotation"]) == ("jobs", "ingress", INGRESS)
    assert "forged" in line["cause"], "the bad value is quoted in the cause, inside the one line"
    forged = [r for r in records if r.get("msg") == "forged" or (r.get("pod") == "victim" and r["level"] == "ERROR")]
    assert not forged, "no forged line"

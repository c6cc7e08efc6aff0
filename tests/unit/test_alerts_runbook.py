"""Every alert links to its own section of docs/runbook.md, at the project's home (Chart.yaml),
and the runbook has a section for each alert and for nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = yaml.safe_load((ROOT / "dashboards" / "alerts.rules.yaml").read_text())
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
HOME = yaml.safe_load((ROOT / "helm" / "podbw" / "Chart.yaml").read_text())["home"]


def alerts() -> list[dict]:
    return [rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(level: str) -> list[str]:
    return re.findall(rf"^{level} (.+)$", RUNBOOK, re.MULTILINE)


def test_github_anchor() -> None:
    assert github_anchor("PodbwAgentDown") == "podbwagentdown"
    assert github_anchor("Change a pod's limit") == "change-a-pods-limit"


def test_every_alert_links_to_its_runbook_section() -> None:
    anchors = {github_anchor(h) for h in headings("##") + headings("###")}
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == f"{HOME}/blob/main/docs/runbook.md", rule["alert"]
        assert anchor == github_anchor(rule["alert"]) and anchor in anchors, rule["alert"]


def test_the_runbook_has_one_section_per_alert() -> None:
    sections = [h for h in headings("##") if h.startswith("Podbw")]
    assert sections == [rule["alert"] for rule in alerts()]


def test_runbook_links_inside_the_page_resolve() -> None:
    anchors = {github_anchor(h) for h in headings("##") + headings("###")}
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK)
    assert links
    assert [link for link in links if link not in anchors] == []


def test_every_alert_has_a_summary_a_description_and_a_runbook_url() -> None:
    for rule in alerts():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert len(annotations["description"]) > 120, rule["alert"]

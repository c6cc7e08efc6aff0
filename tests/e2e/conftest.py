"""Fixtures of the e2e tests: the whole stack (lab node, `podbw run`, a real Prometheus)."""

from __future__ import annotations

import shutil
import tempfile
from typing import Iterator

import pytest

from agent.lab.spec import PodSpec
from tests.e2e.stack import PROMETHEUS_BIN, Stack, running_stack

INGRESS = "kubernetes.io/ingress-bandwidth"
EGRESS = "kubernetes.io/egress-bandwidth"
SERVER_INGRESS_BITS_PER_S = 50e6

E2E_PODS = (
    PodSpec("client", "shop"),
    PodSpec("server", "shop", {INGRESS: "50M", EGRESS: "20M"}),
    PodSpec("bad", "shop", {INGRESS: "50Mbps"}),  # invalid: quantities have no unit
    PodSpec("legacy", "ops", {INGRESS: "10M"}),  # gets a foreign qdisc before the agent starts
)
"""The node the e2e tests watch: traffic, both limits, an invalid annotation, a foreign qdisc."""


@pytest.fixture(scope="module")
def e2e_stack() -> Iterator[Stack]:
    if shutil.which(PROMETHEUS_BIN) is None:
        pytest.skip(f"{PROMETHEUS_BIN} not installed (Debian package prometheus)")
    workdir = tempfile.mkdtemp(prefix="podbw-e2e-")
    try:
        with running_stack(workdir, E2E_PODS, foreign=("legacy",)) as stack:
            yield stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

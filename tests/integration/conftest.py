"""Fixtures for root tests: labs with private names, netns dirs and subnets, always torn down."""

from __future__ import annotations

import json
import os
import secrets
from typing import Callable, Iterator

import pytest

from agent.lab import links
from agent.lab.config import LAB_ROOT, LabConfig, lab_names
from agent.lab.node import LabNode

LabFactory = Callable[[], LabNode]


def _subnets_in_use() -> set[str]:
    subnets = set()
    for name in lab_names():
        try:
            with open(os.path.join(LAB_ROOT, name, "state.json"), encoding="utf-8") as f:
                subnets.add(json.load(f)["subnet"])
        except (OSError, ValueError, KeyError):
            continue
    return subnets


def new_lab_config() -> LabConfig:
    """A lab name no other lab (or host address) collides with; its namespaces stay private."""
    taken = _subnets_in_use()
    for _ in range(100):
        name = f"t{secrets.token_hex(4)}"
        config = LabConfig.for_name(name)
        if config.subnet in taken or links.addresses_in(config.subnet) or os.path.exists(config.state_dir):
            continue
        return LabConfig.for_name(name, netns_dir=os.path.join(config.state_dir, "netns"))
    raise RuntimeError("no free lab subnet")


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """Call it to get a LabNode (not up yet); every lab made is brought down after the test,
    pass or fail, which also kills whatever still runs in its pods (iperf3 servers etc.)."""
    nodes: list[LabNode] = []

    def make() -> LabNode:
        node = LabNode(new_lab_config())
        nodes.append(node)
        return node

    yield make
    errors = []
    for node in reversed(nodes):
        try:
            node.down()
        except Exception as e:  # keep tearing the other labs down
            errors.append(f"{node.config.name}: {e!r}")
    assert not errors, errors


# ---- the agent as a process (tests/integration/agent_process.py) ----------------------------

from typing import Any, Sequence  # noqa: E402

from tests.integration.agent_process import AgentProcess  # noqa: E402

AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def agent_factory(lab_factory: LabFactory) -> Iterator[AgentFactory]:
    """Call it as `agent_factory(lab, extra_args=[...])` to get a started AgentProcess (ready
    on /readyz); every agent made is stopped with SIGTERM after the test, pass or fail.
    It depends on lab_factory so that agents always stop before their labs go down."""
    agents: list[AgentProcess] = []

    def make(lab: LabNode, extra_args: Sequence[str] = (), **kwargs: Any) -> AgentProcess:
        agent = AgentProcess(lab, extra_args, **kwargs)
        agents.append(agent)
        return agent.start()

    yield make
    errors = []
    for agent in reversed(agents):
        try:
            agent.close()
        except Exception as e:  # keep stopping the other agents
            errors.append(repr(e))
    assert not errors, errors

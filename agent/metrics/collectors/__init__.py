"""Every collector podbw has, in exposition order; each module holds one."""

from agent.metrics.collectors import agent_health, limit, network, pod_info, process, qdisc, shaping_state, throughput
from agent.metrics.registry import CollectorEntry

COLLECTORS: tuple[CollectorEntry, ...] = (
    network.COLLECTOR,
    qdisc.COLLECTOR,
    limit.COLLECTOR,
    throughput.COLLECTOR,
    shaping_state.COLLECTOR,
    pod_info.COLLECTOR,
    agent_health.COLLECTOR,
    process.COLLECTOR,
)
COLLECTORS_BY_NAME = {entry.name: entry for entry in COLLECTORS}
DEFAULT_COLLECTORS = frozenset(entry.name for entry in COLLECTORS if entry.enabled_by_default)

from agent.discovery.registry import ADDED, REMOVED, UPDATED, PodEvent, PodRegistry
from agent.model.pod import Pod


def pod(sandbox_id: str, name: str = "p", annotations: dict | None = None) -> Pod:
    return Pod(sandbox_id, "uid-" + sandbox_id, "ns", name, f"/run/netns/{sandbox_id}", annotations or {})


def recording_registry() -> tuple[PodRegistry, list[PodEvent]]:
    events: list[PodEvent] = []
    registry = PodRegistry(clock=lambda: 42.0)
    registry.subscribe(events.append)
    return registry, events


def test_upsert_notifies_added_then_updated_and_ignores_no_change() -> None:
    registry, events = recording_registry()
    registry.upsert(pod("a"), seen_at_monotonic_s=1.5)
    registry.upsert(pod("a"))
    registry.upsert(pod("a", annotations={"k": "v"}))
    assert [(e.kind, e.pod.sandbox_id) for e in events] == [(ADDED, "a"), (UPDATED, "a")]
    assert events[0].seen_at_monotonic_s == 1.5
    assert events[1].seen_at_monotonic_s == 42.0


def test_replace_all_reports_only_differences() -> None:
    registry, events = recording_registry()
    registry.replace_all([pod("a"), pod("b")])
    events.clear()
    registry.replace_all([pod("b", name="renamed"), pod("c")])
    assert sorted((e.kind, e.pod.sandbox_id) for e in events) == [(ADDED, "c"), (REMOVED, "a"), (UPDATED, "b")]
    assert sorted(p.sandbox_id for p in registry.pods()) == ["b", "c"]


def test_remove_and_lookup_by_netns() -> None:
    registry, events = recording_registry()
    registry.upsert(pod("a"))
    assert registry.by_netns("/run/netns/a").sandbox_id == "a"
    registry.remove("a")
    registry.remove("a")
    assert [e.kind for e in events] == [ADDED, REMOVED]
    assert registry.by_netns("/run/netns/a") is None and len(registry) == 0


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    registry = PodRegistry()
    seen = []

    def broken(event: PodEvent) -> None:
        raise RuntimeError("boom")

    registry.subscribe(broken)
    registry.subscribe(seen.append)
    registry.upsert(pod("a"))
    assert len(seen) == 1

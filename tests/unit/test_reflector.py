"""The reflector's state machine, run step by step on recorded API JSON: list, watch with bookmarks,
resume after the server ends a watch, 410 (as an ERROR event and as an HTTP status), connection
errors and timeouts, each with the deltas the handler gets and the source's health."""

from __future__ import annotations

import json
import threading
from typing import Iterator

import pytest
from lightkube.resources.core_v1 import Namespace, Pod

from agent.kube.client import namespace_record, pod_record
from agent.kube.errors import KubeError, KubeGone, KubeUnavailable
from agent.kube.reflector import ADDED, DELETED, UPDATED, Listing, Reflector, WatchEvent
from agent.model.backoff import Backoff
from tests.unit.kube_api_server import recorded, recorded_lines

WEB = "0f7c2d9e-1c6b-4b0e-9d55-6a1f0e6b7a01"
BATCH = "5e1a0b7c-2d3e-4f50-8a9b-0c1d2e3f4a02"
CART = "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e05"
KINDS = {"pods": (Pod, pod_record), "namespaces": (Namespace, namespace_record)}


def listing(name: str, kind: str = "pods") -> Listing:
    model, record = KINDS[kind]
    body = json.loads(recorded(name))
    return Listing(tuple(record(model.from_dict(item)) for item in body["items"]), body["metadata"]["resourceVersion"])


def events(name: str, kind: str = "pods") -> list[WatchEvent]:
    """Watch lines as the client yields them (ERROR lines as the KubeGone the client raises)."""
    model, record = KINDS[kind]
    out: list = []
    for line in recorded_lines(name):
        event = json.loads(line)
        obj = event["object"]
        if event["type"] == "ERROR":
            out.append(KubeGone(f"watch: {obj['code']} {obj['reason']}: {obj['message']}"))
        elif event["type"] == "BOOKMARK":
            out.append(WatchEvent("BOOKMARK", None, obj["metadata"]["resourceVersion"]))
        else:
            out.append(WatchEvent(event["type"], record(model.from_dict(obj)), obj["metadata"]["resourceVersion"]))
    return out


class Scripted:
    """A source answering each list and watch with the next scripted answer: a Listing, a list of
    events (the watch then ends as at the server's timeout), or a KubeError (raised; inside an
    event list, raised after the events before it)."""

    what = "pods on node node-a"

    def __init__(self, lists: list, watches: list) -> None:
        self.lists, self.watches = list(lists), list(watches)
        self.calls: list[tuple] = []

    def list(self) -> Listing:
        self.calls.append(("list",))
        answer = self.lists.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return answer

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[WatchEvent]:
        self.calls.append(("watch", resource_version))
        answer = self.watches.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        for item in answer:
            if isinstance(item, KubeError):
                raise item
            yield item


class Recorder:
    """The handler and health callbacks: the batches handed over, and the objects they add up to."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.health: list[tuple[bool, str]] = []
        self.known: dict = {}

    def handler(self, deltas, seen_at) -> None:
        self.batches.append([(d.kind, d.obj.key) for d in deltas])
        for d in deltas:
            if d.new is None:
                del self.known[d.old.key]
            else:
                self.known[d.new.key] = d.new

    def report(self, up: bool, reason: str) -> None:
        self.health.append((up, reason))


def reflector(source: Scripted, recorder: Recorder, backoff: Backoff | None = None) -> Reflector:
    return Reflector(
        source, recorder.handler, recorder.report, backoff or Backoff(initial_s=1.0, max_s=8.0),
        watch_timeout_s=lambda: 300,
    )


def test_list_then_watch_from_the_lists_version_with_bookmarks_and_resume() -> None:
    source = Scripted([listing("pods_list.json")], [events("pods_watch_annotate.jsonl"), []])
    rec = Recorder()
    r = reflector(source, rec)
    assert r.step() == 0.0
    assert rec.batches == [[(ADDED, WEB), (ADDED, BATCH)]]
    assert rec.health == [(True, "")] and r.resource_version == "1200"

    assert r.step() == 0.0  # the watch: every event, then the server ends it
    assert source.calls[1] == ("watch", "1200")
    assert rec.batches[1:] == [
        [(UPDATED, WEB)],  # ingress 10M -> 50M
        [(UPDATED, WEB)],  # a status change: a new resourceVersion, the same annotations
        [(UPDATED, WEB)],  # egress removed
        [(ADDED, CART)],
        [(DELETED, BATCH)],
    ]
    assert r.resource_version == "1400"  # the last bookmark moved it past the last event
    assert rec.known[WEB].annotations == {"kubernetes.io/ingress-bandwidth": "50M", "podbw.io/egress-burst": "1Mi"}
    assert set(rec.known) == {WEB, CART}

    r.step()  # resumed from the bookmark's version: no relist
    assert source.calls == [("list",), ("watch", "1200"), ("watch", "1400")]


def test_gone_as_an_error_event_relists_once_and_diffs() -> None:
    watch = [*events("pods_watch_annotate.jsonl")[:2], *events("watch_error_410.jsonl")]
    source = Scripted([listing("pods_list.json"), listing("pods_list_after_gone.json")], [watch, []])
    rec = Recorder()
    r = reflector(source, rec)
    r.step()
    assert r.step() == 0.0  # 410: relist at once, no backoff
    assert r.resource_version is None
    assert rec.health == [(True, "")]  # a 410 is no outage
    r.step()
    assert rec.batches[-1] == [(DELETED, BATCH), (UPDATED, WEB)]  # batch-0 went while the watch was gone
    assert rec.known[WEB].annotations == {"kubernetes.io/ingress-bandwidth": "80M"}
    r.step()
    assert source.calls == [("list",), ("watch", "1200"), ("list",), ("watch", "1500")]


def test_gone_as_an_http_status_relists() -> None:
    source = Scripted(
        [listing("pods_list.json"), listing("pods_list.json")],
        [KubeGone("watch pods: 410 Expired: too old resource version: 1200 (1350)"), []],
    )
    rec = Recorder()
    r = reflector(source, rec)
    r.step()
    assert r.step() == 0.0
    r.step()
    r.step()
    assert source.calls == [("list",), ("watch", "1200"), ("list",), ("watch", "1200")]
    assert rec.batches == [[(ADDED, WEB), (ADDED, BATCH)]]  # the same list: nothing changed


@pytest.mark.parametrize(
    "error",
    [
        KubeUnavailable("watch pods: ConnectError: [Errno 111] Connection refused"),
        KubeUnavailable("watch pods: RemoteProtocolError: incomplete chunked read"),
        KubeUnavailable("watch pods: ReadTimeout: timed out"),
    ],
    ids=["refused", "reset mid-stream", "timeout"],
)
def test_a_broken_watch_reports_down_backs_off_and_relists(error: KubeError) -> None:
    refused = KubeUnavailable("list pods: ConnectError: [Errno 111] Connection refused")
    source = Scripted(
        [refused, listing("pods_list.json"), listing("pods_list.json")],
        [[*events("pods_watch_annotate.jsonl")[:2], error], []],
    )
    rec = Recorder()
    r = reflector(source, rec, Backoff(initial_s=1.0, max_s=8.0))
    assert 0.9 <= r.step() <= 1.1  # the list failed: the next delay would be 2 s
    r.step()
    delay_s = r.step()
    assert 0.9 <= delay_s <= 1.1  # the watch delivered events before it broke: the backoff started over
    assert rec.health == [(False, str(refused)), (True, ""), (False, str(error))]
    assert rec.known[WEB].annotations["kubernetes.io/ingress-bandwidth"] == "50M"  # kept while down
    r.step()
    assert rec.health[-1] == (True, "") and source.calls[-1] == ("list",)
    assert rec.batches[-1] == [(UPDATED, WEB)]  # the list's state is the truth again


def test_failing_lists_back_off_longer_each_time_up_to_the_cap() -> None:
    down = KubeUnavailable("list pods: ConnectError: [Errno 111] Connection refused")
    source = Scripted([down] * 6 + [listing("pods_list.json")], [])
    rec = Recorder()
    r = reflector(source, rec)
    delays = [r.step() for _ in range(6)]
    for delay_s, base_s in zip(delays, (1, 2, 4, 8, 8, 8)):
        assert 0.9 * base_s <= delay_s <= 1.1 * base_s
    assert rec.health == [(False, str(down))] * 6 and rec.batches == []
    assert r.step() == 0.0 and rec.health[-1] == (True, "")


def test_a_bookmark_only_watch_changes_nothing_but_the_version() -> None:
    source = Scripted([listing("pods_list.json")], [[WatchEvent("BOOKMARK", None, "1999")], []])
    rec = Recorder()
    r = reflector(source, rec)
    r.step()
    r.step()
    r.step()
    assert source.calls[-1] == ("watch", "1999")
    assert rec.batches == [[(ADDED, WEB), (ADDED, BATCH)]]


def test_deleting_an_unknown_object_is_no_delta() -> None:
    deleted_cart = [e for e in events("pods_watch_annotate.jsonl") if e.type == "ADDED"]
    gone = WatchEvent("DELETED", deleted_cart[0].obj, "1321")
    source = Scripted([listing("pods_list.json")], [[gone], []])
    rec = Recorder()
    r = reflector(source, rec)
    r.step()
    r.step()
    assert rec.batches == [[(ADDED, WEB), (ADDED, BATCH)]] and r.resource_version == "1321"


def test_namespaces_on_recorded_json() -> None:
    source = Scripted([listing("namespaces_list.json", "namespaces")], [events("namespaces_watch_defaults.jsonl", "namespaces")])
    rec = Recorder()
    r = reflector(source, rec)
    r.step()
    r.step()
    assert rec.batches == [
        [(ADDED, "shop"), (ADDED, "jobs")],
        [(UPDATED, "jobs")],  # a default appears
        [(UPDATED, "jobs")],  # a label only: a new resourceVersion
        [(ADDED, "new-team")],
    ]
    assert rec.known["shop"].annotations == {
        "podbw.io/default-egress-bandwidth": "5M", "podbw.io/default-ingress-latency": "5ms",
    }  # other annotations are not kept


def test_stopping_closes_the_watch_and_reports_no_failure() -> None:
    stop = threading.Event()

    class StopsMidWatch(Scripted):
        def watch(self, resource_version, timeout_s):
            yield from events("pods_watch_annotate.jsonl")[:2]
            stop.set()  # ApiSource.stop(): the stop flag, then the client closed under the watch
            raise KubeUnavailable("watch pods: RuntimeError: the client has been closed")

    source = StopsMidWatch([listing("pods_list.json")], [])
    rec = Recorder()
    r = reflector(source, rec)
    r.run(stop)
    assert rec.health == [(True, "")]
    assert len(rec.batches) == 2  # the list, then the one event before the stop


def test_a_failing_handler_does_not_end_the_reflector() -> None:
    stop = threading.Event()
    calls = []

    def handler(deltas, seen_at):
        calls.append(len(deltas))
        if len(calls) == 1:
            raise RuntimeError("bug")
        stop.set()

    source = Scripted([listing("pods_list.json"), listing("pods_list.json")], [[]])
    r = Reflector(source, handler, backoff=Backoff(initial_s=0.001, max_s=0.001), watch_timeout_s=lambda: 300)
    r.run(stop)
    assert calls == [2, 2]  # relisted after the failure; its objects were handed over again

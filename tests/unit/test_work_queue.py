import threading

from agent.model.pod import Pod
from agent.service.work_queue import WorkQueue


def pod(sandbox_id: str) -> Pod:
    return Pod(sandbox_id, "", "ns", sandbox_id, f"/n/{sandbox_id}")


def test_events_for_one_pod_coalesce_and_keep_the_first_seen_time() -> None:
    queue = WorkQueue()
    queue.reconcile(pod("a"), 1.0)
    queue.reconcile(pod("a"), 2.0)
    queue.reconcile(pod("b"), None)
    work = queue.take(0)
    assert work is not None
    assert sorted((p.sandbox_id, seen) for p, seen in work.pods) == [("a", 1.0), ("b", None)]
    assert work.removed == [] and work.full is False
    assert queue.take(0) is None


def test_remove_cancels_a_pending_reconcile_and_the_reverse() -> None:
    queue = WorkQueue()
    queue.reconcile(pod("a"))
    queue.remove(pod("a"))
    queue.remove(pod("b"))
    queue.reconcile(pod("b"))
    work = queue.take(0)
    assert [p.sandbox_id for p in work.removed] == ["a"]
    assert [p.sandbox_id for p, _ in work.pods] == ["b"]


def test_reconcile_all_and_close_wake_a_waiting_taker() -> None:
    queue = WorkQueue()
    results = []
    taker = threading.Thread(target=lambda: results.append(queue.take(5.0)))
    taker.start()
    queue.reconcile_all()
    taker.join(5.0)
    assert results and results[0].full is True
    queue.close()
    assert queue.take(5.0) is None

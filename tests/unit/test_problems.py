"""ProblemLog and cause_key: each cause said once while it lasts, told apart by its whole text."""

from __future__ import annotations

import pytest

from agent.model.problems import ProblemLog, cause_key

LONG = "x" * 40


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ((LONG + "1",), (LONG + "2",), False),  # differ after what a log line shows
        (("10M",), ("10M",), True),
        (("ab", "c"), ("a", "bc"), False),  # parts are not merely concatenated
        (("é" * 10_000,), ("é" * 10_000,), True),
        (("\udcff",), ("\udcfe",), False),  # lone surrogates from odd input still hash
    ],
)
def test_cause_key(a: tuple, b: tuple, same: bool) -> None:
    assert (cause_key(*a) == cause_key(*b)) is same
    assert len(cause_key(*a)) == 40


def rounds(log: ProblemLog, per_round: list[list[str]]) -> list[list[str]]:
    """What gets said in each round of checks of one subject."""
    said: list[list[str]] = []
    for causes in per_round:
        log.begin("pod")
        now: list[str] = []
        for cause in causes:
            log.report("pod", cause, lambda c=cause: now.append(c))
        log.end("pod")
        said.append(now)
    return said


@pytest.mark.parametrize(
    ("per_round", "said"),
    [
        ([["a"], ["a"], ["a"]], [["a"], [], []]),
        ([["a"], [], ["a"]], [["a"], [], ["a"]]),  # over, then back: news again
        ([["a", "b"], ["b", "c"], ["a"]], [["a", "b"], ["c"], ["a"]]),
        ([[], []], [[], []]),
    ],
)
def test_each_cause_is_said_once_while_it_lasts(per_round, said) -> None:
    assert rounds(ProblemLog(), per_round) == said


def test_subjects_are_apart_and_forget_starts_afresh() -> None:
    log = ProblemLog()
    said: list[str] = []
    for subject in ("a", "b"):
        log.begin(subject)
        log.report(subject, "k", lambda s=subject: said.append(s))
        log.end(subject)
    log.forget("a")
    for subject in ("a", "b"):
        log.begin(subject)
        log.report(subject, "k", lambda s=subject: said.append(s))
        log.end(subject)
    assert said == ["a", "b", "a"]

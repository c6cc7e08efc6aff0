"""The logfmt and JSON formatters: promslog's keys, one line per record, pod fields of their own,
and hostile values (pod names and annotation values are user input) escaped, never forging a line."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from agent.model.direction import Direction
from agent.model.log_fields import pod_fields
from agent.model.pod import Pod
from agent.service.logs import MAX_VALUE_CHARS, JsonFormatter, LogfmtFormatter, logfmt_value

HOSTILE = [
    "web-0",
    "",
    "two words",
    "a=b",
    'say "hi"',
    "back\\slash",
    "web\nlevel=ERROR msg=forged",
    "carriage\rreturn",
    "tab\there",
    "café",
    "no\u00a0break",
    "line\u2028separator",
    "escape\x1b[31m",
    "nul\x00",
    "surrogate\udc80",
    "astral\U0001f600",
    "x" * (MAX_VALUE_CHARS + 10),
]

_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict reader for the test: the whole line must be key=value pairs."""
    pairs = _PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, line
    return {key: unquote(value) for key, value in pairs}


def unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    return re.sub(
        r"\\(u[0-9a-f]{4}|U[0-9a-f]{8}|.)",
        lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), None)
        or (chr(int(m.group(1)[1:], 16)) if m.group(1)[0] in "uU" and len(m.group(1)) > 1 else m.group(1)),
        value[1:-1],
    )


def record(msg: str = "annotation invalid", level: int = logging.ERROR, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("agent.shaping.reconciler")
    rec = logger.makeRecord(logger.name, level, "/x/agent/shaping/reconciler.py", 415, msg, (), None, extra=extra)
    rec.created = 1767322800.1234  # 2026-01-02T03:00:00.123Z
    return rec


def expected_text(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS]


@pytest.mark.parametrize(
    "value, text",
    [
        ("web-0", "web-0"),
        ("", '""'),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("web\nlevel=ERROR", '"web\\nlevel=ERROR"'),
        ("tab\there", '"tab\\there"'),
        ("café", "café"),
        ("no\u00a0break", '"no\\u00a0break"'),
        ("line\u2028sep", '"line\\u2028sep"'),
        ("esc\x1b", '"esc\\u001b"'),
        ("surrogate\udc80", '"surrogate\\udc80"'),
        (3, "3"),
        (0.25, "0.25"),
        (None, "None"),
        (Direction.INGRESS, "ingress"),
    ],
)
def test_logfmt_values(value: object, text: str) -> None:
    assert logfmt_value(value) == text


def test_logfmt_line_has_promslog_keys_then_fields() -> None:
    line = LogfmtFormatter().format(record(**pod_fields(pod("shop", "web"), Direction.EGRESS, "bad rate")))
    assert line == (
        "time=2026-01-02T03:00:00.123Z level=ERROR source=reconciler.py:415 msg=\"annotation invalid\" "
        'namespace=shop pod=web direction=egress cause="bad rate"'
    )


@pytest.mark.parametrize("hostile", HOSTILE)
def test_logfmt_hostile_pod_name_stays_one_field_of_one_line(hostile: str) -> None:
    line = LogfmtFormatter().format(record(**pod_fields(pod(hostile, hostile), cause=hostile)))
    assert "\n" not in line and "\r" not in line
    fields = parse_logfmt(line)
    assert list(fields) == ["time", "level", "source", "msg", "namespace", "pod", "cause"]
    assert fields["level"] == "ERROR" and fields["msg"] == "annotation invalid"
    assert fields["namespace"].startswith(expected_text(hostile))
    assert fields["pod"] == fields["cause"] == fields["namespace"]
    line.encode("utf-8", "backslashreplace")  # never a UnicodeEncodeError on stderr


@pytest.mark.parametrize("hostile", HOSTILE)
def test_json_hostile_pod_name_stays_one_field_of_one_object(hostile: str) -> None:
    line = JsonFormatter().format(record(**pod_fields(pod("ns", hostile), Direction.INGRESS, cause=hostile)))
    assert "\n" not in line and line.isascii()
    fields = json.loads(line)
    assert list(fields) == ["time", "level", "source", "msg", "namespace", "pod", "direction", "cause"]
    assert fields["pod"].startswith(expected_text(hostile)) and fields["direction"] == "ingress"
    assert fields["pod"] == fields["cause"]


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()], ids=["logfmt", "json"])
def test_hostile_message_cannot_forge_a_line(formatter: logging.Formatter) -> None:
    rec = record("pod %s: bad", level=logging.WARNING)
    rec.args = ('web"\ntime=x level=ERROR msg="forged',)
    line = formatter.format(rec)
    assert "\n" not in line
    fields = json.loads(line) if isinstance(formatter, JsonFormatter) else parse_logfmt(line)
    assert fields["msg"] == 'pod web"\ntime=x level=ERROR msg="forged: bad' and fields["level"] == "WARN"


@pytest.mark.parametrize(
    "level, name", [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARN"), (logging.ERROR, "ERROR"),
                    (logging.CRITICAL, "ERROR")]
)
def test_levels_are_promslog_names(level: int, name: str) -> None:
    assert json.loads(JsonFormatter().format(record(level=level)))["level"] == name


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()], ids=["logfmt", "json"])
def test_exception_and_clashing_keys_stay_on_the_line(formatter: logging.Formatter) -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record(level=logging.ERROR, time="not the time", count=3, ratio=float("nan"))
        rec.exc_info = sys.exc_info()
    line = formatter.format(rec)
    assert "\n" not in line
    fields = json.loads(line) if isinstance(formatter, JsonFormatter) else parse_logfmt(line)
    assert fields["time"] == "2026-01-02T03:00:00.123Z" and fields["field_time"] == "not the time"
    assert fields["exception"].startswith("Traceback") and "ValueError: boom\nsecond line" in fields["exception"]
    assert str(fields["count"]) == "3" and str(fields["ratio"]) == "nan"


def test_podbw_sources_keep_their_package_path() -> None:
    rec = logging.getLogger("agent.service.agent").makeRecord("agent.service.agent", logging.INFO, __file__, 1, "m", (), None)
    rec.pathname = logging.__file__  # a file outside podbw: its base name
    assert parse_logfmt(LogfmtFormatter().format(rec))["source"] == "__init__.py:1"
    import agent.service.logs as logs

    rec.pathname = logs.__file__
    assert parse_logfmt(LogfmtFormatter().format(rec))["source"] == "agent/service/logs.py:1"


@pytest.mark.parametrize(
    "direction, cause, expected",
    [
        (None, None, {"namespace": "shop", "pod": "web"}),
        (Direction.INGRESS, None, {"namespace": "shop", "pod": "web", "direction": "ingress"}),
        ("egress", "rate too high", {"namespace": "shop", "pod": "web", "direction": "egress", "cause": "rate too high"}),
        (None, "", {"namespace": "shop", "pod": "web", "cause": ""}),
    ],
)
def test_pod_fields(direction: Direction | str | None, cause: str | None, expected: dict[str, str]) -> None:
    assert pod_fields(pod("shop", "web"), direction, cause) == expected


def pod(namespace: str, name: str) -> Pod:
    return Pod(sandbox_id="s" * 64, uid="u", namespace=namespace, name=name, netns_path="/var/run/netns/x")

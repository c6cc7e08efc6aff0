import os
import struct

from agent.discovery.inotify import IN_CREATE, IN_DELETE, Inotify, parse_events


def test_parse_events_handles_padded_names_and_several_events() -> None:
    data = struct.pack("iIII", 1, IN_CREATE, 0, 16) + b"abc".ljust(16, b"\0")
    data += struct.pack("iIII", 1, IN_DELETE, 0, 0)
    events = parse_events(data)
    assert [(e.mask, e.name) for e in events] == [(IN_CREATE, "abc"), (IN_DELETE, "")]


def test_inotify_reports_a_created_file(tmp_path) -> None:
    with Inotify() as inotify:
        inotify.add_watch(str(tmp_path), IN_CREATE | IN_DELETE)
        (tmp_path / "pin").touch()
        os.unlink(tmp_path / "pin")
        events = inotify.read(1.0)
    assert [(e.mask & (IN_CREATE | IN_DELETE), e.name) for e in events] == [(IN_CREATE, "pin"), (IN_DELETE, "pin")]

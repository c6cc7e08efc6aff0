import os

from agent.discovery import overrides_file
from agent.discovery.overrides_file import ERROR_KEY, OverridesFile
from agent.model.health import HealthRecorder


def test_invalid_file_keeps_the_last_valid_overrides(tmp_path) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text("shop/web: {kubernetes.io/ingress-bandwidth: 10M}\n")
    health = HealthRecorder()
    changes = []
    overrides = OverridesFile(str(path), health, lambda: changes.append(1))
    assert overrides.load() is True
    assert overrides.current() == {"shop/web": {"kubernetes.io/ingress-bandwidth": "10M"}}

    path.write_text("shop/web: [unclosed\n")
    assert overrides.load() is False
    assert overrides.current() == {"shop/web": {"kubernetes.io/ingress-bandwidth": "10M"}}
    assert overrides.load() is False  # the same error is counted once
    assert health.data().annotation_errors == {ERROR_KEY: 1}
    assert "line" in overrides.error

    path.write_text("shop/web: {kubernetes.io/ingress-bandwidth: 20M}\n")
    assert overrides.load() is True
    assert overrides.error == ""
    path.unlink()
    assert overrides.load() is True and overrides.current() == {}


def test_an_invalid_file_is_parsed_once_until_it_changes(tmp_path, monkeypatch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text("shop/web: [unclosed\n")
    overrides = OverridesFile(str(path), HealthRecorder(), lambda: None)
    parsed = []
    real_parse = overrides_file.parse_overrides
    monkeypatch.setattr(overrides_file, "parse_overrides", lambda text: parsed.append(text) or real_parse(text))
    assert overrides.load() is False
    assert overrides.load() is False
    assert len(parsed) == 1


def test_reload_if_changed_reads_only_a_changed_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text("shop/web: {kubernetes.io/ingress-bandwidth: 10M}\n")
    changes = []
    overrides = OverridesFile(str(path), HealthRecorder(), lambda: changes.append(1))
    assert overrides.reload_if_changed() is True  # never read yet
    assert changes == [1]

    def no_read(*args, **kwargs):
        raise AssertionError("read although the file did not change")

    with monkeypatch.context() as patch:
        patch.setattr(overrides_file, "open", no_read, raising=False)
        assert overrides.reload_if_changed() is False

    path.write_text("shop/web: {kubernetes.io/ingress-bandwidth: 20M}\n")  # same size, in place
    assert overrides.reload_if_changed() is True
    assert overrides.current() == {"shop/web": {"kubernetes.io/ingress-bandwidth": "20M"}}
    assert changes == [1, 1]

    os.utime(path)  # touched, content unchanged: read again, nothing changes
    assert overrides.reload_if_changed() is False
    path.unlink()
    assert overrides.reload_if_changed() is True and overrides.current() == {}
    assert overrides.reload_if_changed() is False


def test_reload_if_changed_never_raises(tmp_path, monkeypatch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text("a/b: {k: v}\n")
    overrides = OverridesFile(str(path), HealthRecorder(), lambda: 1 / 0)
    assert overrides.reload_if_changed() is True  # the handler's failure is logged, not raised
    path.write_text("a/b: {k: w}\n")
    monkeypatch.setattr(overrides_file, "parse_overrides", lambda text: {}["boom"])
    assert overrides.reload_if_changed() is False

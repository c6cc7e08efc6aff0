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

"""The annotations file is followed through every way people and kubelet change it: real files
in a temporary directory, real inotify, the real watch thread (no root needed)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from agent.discovery.overrides_file import ERROR_KEY, OverridesFile
from agent.model.health import HealthRecorder
from tests.integration.helpers import wait_for

WITHIN_S = 1.0
"""A change is in force within a second (README); a lost directory is polled at most every 1 s."""
SETTLE_S = 0.3
"""Time for the watch thread to set its watches: a change made before would be seen by its
first read, not by the watch under test."""

V10 = "ns/web: {kubernetes.io/ingress-bandwidth: 10M}\n"
V20 = "ns/web: {kubernetes.io/ingress-bandwidth: 20M}\n"
V30 = "ns/web: {kubernetes.io/ingress-bandwidth: 30M}\n"


def limit(overrides: OverridesFile) -> str | None:
    return overrides.current().get("ns/web", {}).get("kubernetes.io/ingress-bandwidth")


class Watched:
    """An OverridesFile with its watch thread running, and the changes it reported."""

    def __init__(self, path: Path) -> None:
        self.health = HealthRecorder()
        self.changes = 0
        self._lock = threading.Lock()
        self.overrides = OverridesFile(str(path), self.health, self._changed)
        self.overrides.start()
        time.sleep(SETTLE_S)

    def _changed(self) -> None:
        with self._lock:
            self.changes += 1

    def wait_limit(self, expected: str | None, what: str) -> None:
        wait_for(lambda: limit(self.overrides) == expected, WITHIN_S, 0.01, what)


@pytest.fixture
def watch() -> Iterator[Callable[[Path], Watched]]:
    made: list[Watched] = []

    def make(path: Path) -> Watched:
        watched = Watched(path)
        made.append(watched)
        return watched

    yield make
    for watched in made:
        watched.overrides.stop()


def replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_edited_in_place(tmp_path: Path, watch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    assert limit(w.overrides) == "10M"
    path.write_text(V20)
    w.wait_limit("20M", "in-place edit")


def test_renamed_over(tmp_path: Path, watch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    replace_atomically(path, V20)
    w.wait_limit("20M", "rename over")


def test_deleted_file_removes_the_overrides_and_a_new_one_brings_them_back(tmp_path: Path, watch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    path.unlink()
    w.wait_limit(None, "overrides removed with the file")
    path.write_text(V20)
    w.wait_limit("20M", "file created again")


def test_moved_away_removes_the_overrides(tmp_path: Path, watch) -> None:
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    path.rename(tmp_path / "annotations.yaml.bak")
    w.wait_limit(None, "overrides removed when the file is moved away")


class ConfigMapVolume:
    """kubelet's AtomicWriter layout: `<key> -> ..data/<key>`, `..data -> ..<timestamp>`; an
    update writes a new timestamped directory, renames a fresh `..data_tmp` link over `..data`,
    and removes the old directory."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory, self.key = directory, key
        self._generation = 0
        self._current: Path | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        self._generation += 1
        new = self.directory / f"..2026_12_02_10_00_{self._generation:02d}.{os.getpid()}"
        new.mkdir()
        (new / self.key).write_text(text)
        tmp_link = self.directory / "..data_tmp"
        tmp_link.symlink_to(new.name)
        os.replace(tmp_link, self.directory / "..data")
        if not (self.directory / self.key).is_symlink():
            (self.directory / self.key).symlink_to(f"..data/{self.key}")
        if self._current is not None:
            shutil.rmtree(self._current)
        self._current = new


def test_configmap_data_swaps(tmp_path: Path, watch) -> None:
    volume = ConfigMapVolume(tmp_path / "config", "annotations.yaml")
    volume.write(V10)
    w = watch(volume.directory / "annotations.yaml")
    assert limit(w.overrides) == "10M"
    volume.write(V20)
    w.wait_limit("20M", "first ..data swap")
    volume.write(V30)
    w.wait_limit("30M", "second ..data swap")


def test_symlink_into_another_directory_edited_in_place(tmp_path: Path, watch) -> None:
    etc = tmp_path / "etc-podbw"
    etc.mkdir()
    (etc / "x.yaml").write_text(V10)
    path = tmp_path / "conf" / "annotations.yaml"
    path.parent.mkdir()
    path.symlink_to(etc / "x.yaml")
    w = watch(path)
    assert limit(w.overrides) == "10M"
    (etc / "x.yaml").write_text(V20)
    w.wait_limit("20M", "target edited in place")
    replace_atomically(etc / "x.yaml", V30)
    w.wait_limit("30M", "target renamed over")


def test_symlink_repointed_then_its_new_target_edited(tmp_path: Path, watch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "x.yaml").write_text(V10)
    (second / "x.yaml").write_text(V20)
    path = tmp_path / "annotations.yaml"
    path.symlink_to(first / "x.yaml")
    w = watch(path)
    link_tmp = tmp_path / "link.tmp"
    link_tmp.symlink_to(second / "x.yaml")
    os.replace(link_tmp, path)  # `ln -sfn`
    w.wait_limit("20M", "link re-pointed")
    (second / "x.yaml").write_text(V30)
    w.wait_limit("30M", "the new target edited in place")


@pytest.mark.parametrize("how", ["removed", "moved"])
def test_directory_removed_or_moved_and_recreated(tmp_path: Path, watch, how: str) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    path = directory / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    if how == "removed":
        shutil.rmtree(directory)
        w.wait_limit(None, "overrides removed with the directory")
    else:
        directory.rename(tmp_path / "conf.old")
    time.sleep(0.3)  # long enough for the poll to back off a few times
    directory.mkdir()
    path.write_text(V20)
    w.wait_limit("20M", f"directory {how} and recreated")
    path.write_text(V30)
    w.wait_limit("30M", "edited after the directory came back")


def test_directory_missing_at_start_is_waited_for(tmp_path: Path, watch) -> None:
    path = tmp_path / "later" / "annotations.yaml"
    w = watch(path)
    assert limit(w.overrides) is None
    path.parent.mkdir()
    path.write_text(V10)
    w.wait_limit("10M", "directory created after the start")


def test_a_value_yaml_cannot_build_does_not_stop_the_watch(tmp_path: Path, watch) -> None:
    # 2024-13-45 once raised a bare ValueError from the parser, which ended the watch thread.
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    path.write_text("ns/web: {kubernetes.io/ingress-bandwidth: 2024-13-45}\n")
    wait_for(lambda: w.health.data().annotation_errors.get(ERROR_KEY) == 1, WITHIN_S, 0.01, "error counted")
    assert limit(w.overrides) == "10M"
    path.write_text(V20)
    w.wait_limit("20M", "a valid file after the invalid one")


def test_the_alias_bomb_keeps_the_last_valid_overrides(tmp_path: Path, watch) -> None:
    lines = ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"- &{chr(97 + n)} [" + ",".join([f"*{chr(96 + n)}"] * 9) + "]" for n in range(1, 9)]
    path = tmp_path / "annotations.yaml"
    path.write_text(V10)
    w = watch(path)
    path.write_text("\n".join(lines) + "\n")
    wait_for(lambda: w.health.data().annotation_errors.get(ERROR_KEY) == 1, WITHIN_S, 0.01, "bomb refused")
    assert "refused at line 1, column 3: anchor &a" in w.overrides.error
    assert limit(w.overrides) == "10M"
    path.write_text(V20)
    w.wait_limit("20M", "a valid file after the bomb")


def test_a_replaced_parent_directory_is_caught_by_the_resync_and_watched_again(tmp_path: Path, watch) -> None:
    # inotify sees nothing when a directory above the watched one is swapped: the resync's
    # re-read is the safety net, and it sets the watch on the new directory.
    path = tmp_path / "parent" / "conf" / "annotations.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(V10)
    w = watch(path)
    (tmp_path / "parent").rename(tmp_path / "parent.old")
    path.parent.mkdir(parents=True)
    path.write_text(V20)
    time.sleep(SETTLE_S)
    assert limit(w.overrides) == "10M"  # what the watch alone would keep
    changes = w.changes
    assert w.overrides.reload_if_changed() is True
    assert limit(w.overrides) == "20M" and w.changes == changes + 1
    time.sleep(SETTLE_S)  # the watch thread sets the new watch
    path.write_text(V30)
    w.wait_limit("30M", "edited after the watch moved to the new directory")

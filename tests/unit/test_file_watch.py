"""Which directories and entry names the annotations-file watch follows, per layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from agent.discovery.file_watch import WatchTargets


def plain(root: Path) -> Path:
    (root / "conf").mkdir()
    (root / "conf" / "a.yaml").write_text("")
    return root / "conf" / "a.yaml"


def missing(root: Path) -> Path:
    return root / "conf" / "a.yaml"


def user_symlink(root: Path) -> Path:
    (root / "etc").mkdir()
    (root / "etc" / "x.yaml").write_text("")
    (root / "conf").mkdir()
    (root / "conf" / "a.yaml").symlink_to(root / "etc" / "x.yaml")
    return root / "conf" / "a.yaml"


def relative_dangling_symlink(root: Path) -> Path:
    (root / "conf").mkdir()
    (root / "conf" / "a.yaml").symlink_to("../etc/x.yaml")
    return root / "conf" / "a.yaml"


def configmap(root: Path) -> Path:
    (root / "conf" / "..2026_12_02").mkdir(parents=True)
    (root / "conf" / "..2026_12_02" / "a.yaml").write_text("")
    (root / "conf" / "..data").symlink_to("..2026_12_02")
    (root / "conf" / "a.yaml").symlink_to("..data/a.yaml")
    return root / "conf" / "a.yaml"


def link_to_a_configmap(root: Path) -> Path:
    target = configmap(root)
    (root / "etc").mkdir()
    (root / "etc" / "podbw.yaml").symlink_to(target)
    return root / "etc" / "podbw.yaml"


LAYOUTS = [
    (plain, ["conf"], {"a.yaml"}),
    (missing, ["conf"], {"a.yaml"}),
    (user_symlink, ["conf", "etc"], {"a.yaml", "x.yaml"}),
    (relative_dangling_symlink, ["conf", "etc"], {"a.yaml", "x.yaml"}),
    (configmap, ["conf", "conf/..data", "conf/..2026_12_02"], {"a.yaml"}),
    (link_to_a_configmap, ["etc", "conf", "conf/..data", "conf/..2026_12_02"], {"podbw.yaml", "a.yaml"}),
]


@pytest.mark.parametrize(("layout", "directories", "names"), LAYOUTS, ids=[layout.__name__ for layout, *_ in LAYOUTS])
def test_watch_targets(tmp_path: Path, layout: Callable[[Path], Path], directories: list[str], names: set[str]) -> None:
    root = Path(os.path.realpath(tmp_path))
    targets = WatchTargets(str(layout(root)))
    assert targets.directories == [str(root / d) for d in directories]
    assert targets.names == names


@pytest.mark.parametrize(
    ("name", "matters"), [("a.yaml", True), ("..data", True), ("..2026_12_02", True), ("b.yaml", False), (".a.yaml.swp", False)]
)
def test_names_that_matter(tmp_path: Path, name: str, matters: bool) -> None:
    assert WatchTargets(str(plain(tmp_path))).matters(name) is matters


def test_a_symlink_loop_ends(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    targets = WatchTargets(str(tmp_path / "a"))
    assert targets.directories == [str(tmp_path)]
    assert targets.names == {"a", "b"}

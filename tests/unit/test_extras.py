"""A command whose library lives in an extra names the extra to install."""

from __future__ import annotations

import pytest

from agent.cli.extras import MissingExtra, require


@pytest.mark.parametrize(
    ("module", "extra", "command"),
    [("podbw_no_such_module", "dashboards", "podbw dashboards"), ("podbw_no_such_module.sub", "top", "podbw top")],
)
def test_a_missing_library_names_its_extra(module: str, extra: str, command: str) -> None:
    with pytest.raises(MissingExtra) as raised:
        require(module.split(".")[0], extra, command)
    assert str(raised.value).startswith(f"{command} needs {module.split('.')[0]}, which is not installed")
    assert f"pip install 'podbw[{extra}]'" in str(raised.value)


def test_an_installed_library_passes() -> None:
    require("yaml", "any", "podbw x")  # PyYAML is a runtime dependency: always there

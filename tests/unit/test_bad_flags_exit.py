"""`podbw run` with a bad flag or variable is a process that exits 2 at once with one line on
stderr, before anything starts: no traceback, no spinning core (issue 17, item 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_S = 30.0
"""Only a bound for a broken build that would start the agent; a bad flag exits far sooner."""


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--resync-interval", "-1"], {}, "argument --resync-interval: '-1'"),
        (["--sample-interval", "0"], {}, "argument --sample-interval: '0'"),
        (["--peak-window", "-5"], {}, "argument --peak-window: '-5'"),
        (["--web.listen-address", "127.0.0.1:99999"], {}, "argument --web.listen-address: "),
        (["--cri-timeout", "0"], {}, "argument --cri-timeout: '0'"),
        ([], {"PODBW_RESYNC_INTERVAL": "-1"}, "environment variable PODBW_RESYNC_INTERVAL: '-1'"),
        ([], {"PODBW_WEB_LISTEN_ADDRESS": ":99999"}, "environment variable PODBW_WEB_LISTEN_ADDRESS: "),
    ],
)
def test_bad_flag_exits_2_with_one_line(argv: list[str], env: dict[str, str], message: str, tmp_path: Path) -> None:
    # Harmless if it did start: no CRI, an empty netns directory, an ephemeral loopback port.
    safe = ["--cri-endpoint", "none", "--netns-dir", str(tmp_path)]
    if "PODBW_WEB_LISTEN_ADDRESS" not in env:
        safe += ["--web.listen-address", "127.0.0.1:0"]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PODBW_")}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "run", *safe, *argv],
        cwd=ROOT,
        env={**clean_env, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("podbw run: error: "), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr

"""`podbw run` with a web config that cannot be used: a one-line error and exit code 2, before
anything starts (no traceback, no thread, no port)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_agent(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent", "run", "--cri-endpoint", "none", "--netns-dir", "/nonexistent",
            "--web.listen-address", "127.0.0.1:0", *args]
    return subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("foo: 1\n", "foo: unknown key"),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "cannot load cert_file"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("tls_server_config: [\n", "not valid YAML"),
    ],
)
def test_a_bad_web_config_file_fails_fast(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "web.yml"
    config.write_text(content)
    done = run_agent(["--web.config.file", str(config)])
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"podbw run: web config: {config}: "), done.stderr
    assert message in lines[0]


def test_the_environment_variable_names_the_file_too(tmp_path: Path) -> None:
    done = run_agent([], env={"PODBW_WEB_CONFIG_FILE": str(tmp_path / "missing.yml")})
    assert (done.returncode, done.stderr.strip()) == (
        2, f"podbw run: web config: {tmp_path}/missing.yml: cannot read: No such file or directory"
    )


@pytest.mark.parametrize("flag", ["--web.tls-cert-file", "--web.tls-key-file", "--web.tls-client-ca-file"])
def test_the_removed_tls_flags_are_refused(tmp_path: Path, flag: str) -> None:
    # Replaced by --web.config.file's tls_server_config (issue 15): a leftover flag must not be ignored.
    (tmp_path / "c").write_text("x")
    done = run_agent([flag, str(tmp_path / "c")])
    assert done.returncode == 2
    assert f"unrecognized arguments: {flag}" in done.stderr


def test_help_names_the_web_config_and_no_tls_flags() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    help_text = " ".join(done.stdout.split())
    assert "--web.config.file FILE" in help_text and "PODBW_WEB_CONFIG_FILE" in help_text
    assert "--web.tls" not in help_text and "DEPRECATED" not in help_text

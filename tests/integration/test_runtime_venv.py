"""`podbw run` in a venv holding only requirements.lock (what the image installs) and podbw:
every module it imports imports there, the third-party packages it imports are exactly
pyproject's runtime dependencies, `podbw run --help` works, the agent serves a scrape behind
basic auth, and the commands of the extras say which extra they need.

The venv is made once per content of the lock and pyproject.toml, under .venv-runtime/ (uv
installs from its cache when it can), so only the first run after a change pays for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import grimp
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.integration.agent_process import free_port
from tests.integration.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
UV = Path(sys.executable).parent / "uv"
RUN_ENTRY_MODULES = ("agent.cli.run_cmd", "agent.service.agent")
"""Where `podbw run` starts (the parser's other commands import nothing heavy at the top)."""
PASSWORD_HASH = "$2b$04$XYdJ43StEn1.x6M5jq8Oz.GdHNgh8AgacYrDV002DmVZZpCH79ex2"
"""bcrypt (cost 4) of "secret", for user "prometheus"."""


def clean_env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def uv(*args: str, cwd: Path = ROOT) -> None:
    """A uv command, from its cache first and from the index only when the cache lacks something."""
    env = {**os.environ, "UV_NO_PROGRESS": "1"}  # the caller's proxies and certificates
    offline = subprocess.run([str(UV), *args, "--offline"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if offline.returncode == 0:
        return
    online = subprocess.run([str(UV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert online.returncode == 0, f"uv {' '.join(args)}:\n{offline.stderr}\n{online.stderr}"


@pytest.fixture(scope="module")
def runtime_python() -> Path:
    if not UV.exists():
        pytest.skip("uv is not installed (pip install -e '.[test]')")
    key = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    venv = ROOT / ".venv-runtime" / key
    python, complete = venv / "bin" / "python", venv / ".complete"
    if complete.exists():
        return python
    # Built where it stays (a venv's scripts name their path); `.complete` marks a finished one.
    shutil.rmtree(venv, ignore_errors=True)
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    target = ("--python", str(python))
    uv("pip", "install", "--quiet", *target, "--require-hashes", "--only-binary", ":all:", "-r", str(LOCK))
    # podbw itself as the image has it, but editable: the venv follows this checkout's code.
    uv("pip", "install", "--quiet", *target, "--no-deps", "-e", str(ROOT))
    complete.touch()
    return python


def run_closure() -> tuple[list[str], list[str]]:
    """podbw's modules that `podbw run` imports, at the top or inside functions, and the
    third-party packages among their imports (import-linter's graph)."""
    graph = grimp.build_graph("agent", include_external_packages=True)
    reached = set(RUN_ENTRY_MODULES)
    for module in RUN_ENTRY_MODULES:
        reached |= graph.find_upstream_modules(module)
    ours = sorted(m for m in reached if m == "agent" or m.startswith("agent."))
    theirs = sorted(m for m in reached if m.split(".")[0] not in sys.stdlib_module_names and m not in ours)
    return ours, theirs


def runtime_dependencies() -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}


def test_podbw_run_imports_exactly_the_runtime_dependencies(runtime_python: Path) -> None:
    ours, theirs = run_closure()
    assert "agent.service.basic_auth" in ours and "bcrypt" in theirs, "lazy imports count too"
    done = subprocess.run(
        [str(runtime_python), str(Path(__file__).with_name("runtime_probe.py")), json.dumps(ours), json.dumps(theirs)],
        cwd="/", env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    owners = json.loads(done.stdout)
    assert all(owners.values()), f"packages from no distribution: {owners}"
    imported = {canonicalize_name(dist) for dists in owners.values() for dist in dists}
    assert imported == runtime_dependencies(), "pyproject's dependencies must be what podbw run imports"


def test_podbw_run_help(runtime_python: Path) -> None:
    podbw = runtime_python.parent / "podbw"
    done = subprocess.run([str(podbw), "run", "--help"], cwd="/", env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--web.config.file" in done.stdout and "--no-collector.process" in done.stdout


@pytest.mark.parametrize(
    ("argv", "extra", "installed"),
    [(["dashboards", "--check"], "dashboards", False), (["top", "--once", "--no-fallback", "--url", "http://127.0.0.1:9/metrics"], "top", True)],
)
def test_commands_of_the_extras(runtime_python: Path, argv: list[str], extra: str, installed: bool) -> None:
    # The image carries `top` (the chart's NOTES run podbw top in the agent's pod), not `dashboards`.
    done = subprocess.run([str(runtime_python.parent / "podbw"), *argv], cwd="/", env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    named = f"pip install 'podbw[{extra}]'" in done.stderr
    assert named is not installed, done.stderr
    if not installed:
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.root
def test_the_agent_serves_a_scrape_behind_basic_auth(runtime_python: Path, tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: {PASSWORD_HASH}\n")
    (tmp_path / "netns").mkdir()
    port = free_port()
    agent = subprocess.Popen(
        [str(runtime_python.parent / "podbw"), "run", "--cri-endpoint", "none", "--netns-dir", str(tmp_path / "netns"),
         "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(config)],
        cwd="/", env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        auth = "Basic " + base64.b64encode(b"prometheus:secret").decode()

        def scrape() -> str | None:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": auth})
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    return response.read().decode()
            except (urllib.error.URLError, ConnectionError):
                assert agent.poll() is None, agent.stderr.read().decode() if agent.stderr else ""
                return None

        text = wait_for(scrape, 30.0, interval_s=0.2, what="a scrape of the runtime-only agent")
        assert "podbw_build_info{" in text and "process_resident_memory_bytes " in text
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        refused.value.close()
        assert refused.value.code == 401
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
        if agent.stderr:
            agent.stderr.close()
    assert agent.returncode == 0

"""Every flag and PODBW_* variable, valid and invalid, parsed by podbw's own CLI in-process:
good text becomes the setting, bad text exits 2 with one line naming the flag or variable."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from agent.cli.flags import dest_of
from agent.cli.parser import CommandParser
from agent.cli.main import build_parser
from agent.discovery.settings import AUTO_CRI_ENDPOINTS, DiscoverySettings
from agent.metrics.collectors import COLLECTORS, DEFAULT_COLLECTORS
from agent.service.settings import AgentSettings

FILE = "FILE"
"""Stands for an existing regular file (made per test)."""
DIR = "DIR"
"""Stands for an existing directory (made per test)."""


@pytest.fixture(autouse=True)
def no_podbw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PODBW_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # `--kubernetes auto` finds no cluster


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    return {FILE: str(tmp_path / "file"), DIR: str(tmp_path / "dir")}


def substituted(words: list[str], paths: dict[str, str]) -> list[str]:
    return [paths.get(word, word) for word in words]


def setting_at(settings: Any, path: str) -> Any:
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


# (argv after `run`, path in AgentSettings, expected value)
RUN_VALID = [
    (["--cri-endpoint", "unix:///run/x/crio.sock"], "discovery.cri_endpoint", "unix:///run/x/crio.sock"),
    (["--cri-endpoint", "/run/x/crio.sock"], "discovery.cri_endpoint", "unix:///run/x/crio.sock"),
    (["--cri-endpoint=none"], "discovery.cri_endpoint", None),
    (["--cri-endpoint="], "discovery.cri_endpoint", None),
    (["--netns-dir", DIR], "discovery.netns_dir", DIR),
    (["--netns-dir", "/not/there/yet"], "discovery.netns_dir", "/not/there/yet"),
    (["--resync-interval", "1"], "discovery.resync_interval_s", 1.0),
    (["--resync-interval", "86400"], "discovery.resync_interval_s", 86400.0),
    (["--resync-interval=2.5"], "discovery.resync_interval_s", 2.5),
    (["--cri-timeout", "0.05"], "discovery.cri_timeout_s", 0.05),
    (["--cri-timeout", "60"], "discovery.cri_timeout_s", 60.0),
    (["--egress-mode", "ifb"], "shaping.egress_mode", "ifb"),
    (["--egress-mode", "pod"], "shaping.egress_mode", "pod"),
    (["--take-over-foreign"], "shaping.take_over_foreign", True),
    ([], "shaping.take_over_foreign", False),
    (["--sample-interval", "0.01"], "sampling.interval_s", 0.01),
    (["--sample-interval", "60"], "sampling.interval_s", 60.0),
    (["--peak-window", "0"], "sampling.peak_window_s", 0.0),
    (["--peak-window", "86400"], "sampling.peak_window_s", 86400.0),
    (["--max-interfaces-per-pod", "1"], "sampling.max_interfaces_per_pod", 1),
    (["--max-interfaces-per-pod", "1024"], "sampling.max_interfaces_per_pod", 1024),
    (["--web.config.file", FILE], "web.config_file", FILE),
    (["--web.listen-address", ":9637"], "web.listen_address", ":9637"),
    (["--web.listen-address", "127.0.0.1:0"], "web.listen_address", "127.0.0.1:0"),
    (["--web.listen-address", "[::1]:65535"], "web.listen_address", "[::1]:65535"),
    (["--log.level", "debug"], "logging.level", "debug"),
    (["--log-level", "warning"], "logging.level", "warn"),
    (["--log.level=error"], "logging.level", "error"),
    ([], "logging.level", None),
    (["--log.format", "json"], "logging.format", "json"),
    ([], "logging.format", "logfmt"),
    (["--annotations-file", FILE], "annotations_file", FILE),
    (["--annotations-file", "/etc/podbw/not-yet.yaml"], "annotations_file", "/etc/podbw/not-yet.yaml"),
    ([], "annotations_file", None),
    (["--cleanup-on-exit"], "cleanup_on_exit", True),
    ([], "cleanup_on_exit", False),
    (["--no-collector.process"], "collectors.process", False),
    (["--no-collector.process", "--collector.process"], "collectors.process", True),  # the last one wins
    (["--no-collector.shaping_state"], "collectors.enabled", DEFAULT_COLLECTORS - {"shaping_state"}),
    ([], "collectors.enabled", DEFAULT_COLLECTORS),
    (["--no-collector.unlimited-pods"], "collectors.unlimited_pods", False),
    (["--collector.unlimited-pods"], "collectors.unlimited_pods", True),
    ([], "collectors.unlimited_pods", True),
    *[([f"--collector.{e.name}"], f"collectors.{e.name}", True) for e in COLLECTORS],
    *[([f"--no-collector.{e.name}"], f"collectors.{e.name}", False) for e in COLLECTORS],
    ([], "discovery.kubernetes", "off"),  # auto, with no ServiceAccount token and no kubeconfig
    (["--kubernetes", "auto"], "discovery.kubernetes", "off"),
    (["--kubernetes", "off"], "discovery.kubernetes", "off"),
    (["--kubernetes", "on", "--node-name", "node-1"], "discovery.kubernetes", "on"),
    (["--kubeconfig", FILE, "--node-name", "n1"], "discovery.kubernetes", "on"),  # auto, with a kubeconfig
    (["--kubeconfig", FILE, "--node-name", "n1"], "discovery.kubeconfig", FILE),
    (["--kubeconfig", FILE, "--kubernetes", "off"], "discovery.kubernetes", "off"),
    (["--node-name", "node-1.example.com"], "discovery.node_name", "node-1.example.com"),
    (["--node-name="], "discovery.node_name", None),
    ([], "discovery.node_name", None),
]

# (argv after `run`, what the one-line error must say)
RUN_INVALID = [
    (["--cri-endpoint", "tcp://10.0.0.1:1234"], "argument --cri-endpoint: 'tcp://10.0.0.1:1234'"),
    (["--cri-endpoint", "unix://" + "/x" * 60], "longer than 107 bytes"),
    (["--netns-dir", FILE], "argument --netns-dir: "),
    (["--netns-dir", ""], "argument --netns-dir: empty path"),
    (["--resync-interval", "-1"], "argument --resync-interval: '-1': must be at least 1 and at most 86400 seconds"),
    (["--resync-interval", "0"], "argument --resync-interval: '0'"),
    (["--resync-interval", "0.5"], "argument --resync-interval: '0.5'"),
    (["--resync-interval", "86401"], "argument --resync-interval: '86401'"),
    (["--resync-interval", "nan"], "argument --resync-interval: 'nan'"),
    (["--resync-interval", "inf"], "argument --resync-interval: 'inf'"),
    (["--resync-interval", "30s"], "argument --resync-interval: '30s' is not a number of seconds"),
    (["--cri-timeout", "0"], "argument --cri-timeout: '0': must be more than 0 and at most 60 seconds"),
    (["--cri-timeout", "61"], "argument --cri-timeout: '61'"),
    (["--egress-mode", "tc"], "argument --egress-mode: invalid choice 'tc' (choose from pod, ifb)"),
    (["--sample-interval", "0"], "argument --sample-interval: '0': must be at least 0.01 and at most 60 seconds"),
    (["--sample-interval", "0.005"], "argument --sample-interval: '0.005'"),
    (["--sample-interval", "61"], "argument --sample-interval: '61'"),
    (["--peak-window", "-5"], "argument --peak-window: '-5': must be at least 0 and at most 86400 seconds"),
    (["--peak-window", "86401"], "argument --peak-window: '86401'"),
    (["--max-interfaces-per-pod", "0"], "argument --max-interfaces-per-pod: '0'"),
    (["--max-interfaces-per-pod", "many"], "argument --max-interfaces-per-pod: 'many'"),
    (["--web.config.file", DIR], "argument --web.config.file: "),
    (["--web.listen-address", ":99999"], "argument --web.listen-address: listen address ':99999': port out of range"),
    (["--web.listen-address", ":-1"], "port out of range"),
    (["--web.listen-address", "9637"], "has no port"),
    (["--web.listen-address", "::1:9637"], "put IPv6 hosts in brackets"),
    (["--web.listen-address", ":http"], "port is not a number"),
    (["--log.level", "verbose"], "argument --log.level/--log-level: invalid choice 'verbose'"),
    (["--log.format", "text"], "argument --log.format: invalid choice 'text' (choose from logfmt, json)"),
    (["--annotations-file", DIR], "argument --annotations-file: "),
    (["--take-over-foreign=yes"], "ignored explicit argument 'yes'"),
    (["--collector.process=false"], "ignored explicit argument 'false'"),
    (["--no-collector.unlimited-pods=1"], "ignored explicit argument '1'"),
    (["--kubernetes", "yes"], "argument --kubernetes: invalid choice 'yes' (choose from auto, on, off)"),
    (["--kubernetes", "on"], "--kubernetes is on, so --node-name (PODBW_NODE_NAME) is needed"),
    (["--kubeconfig", FILE], "is given, so --node-name (PODBW_NODE_NAME) is needed"),
    (["--kubeconfig", DIR], "argument --kubeconfig: "),
    (["--node-name", "Node_1"], "argument --node-name: 'Node_1' is not a node name"),
    (["--node-name", "a" * 254], "argument --node-name: 'aaaa"),
    (["--node-name=-node"], "is not a node name"),
    (["--node-name", "node-1."], "is not a node name"),
    (["--resync-interval"], "expected one argument"),
]

# (PODBW_* variable, its text, path in AgentSettings, expected value)
# (PODBW_* variables, path in AgentSettings, expected value)
RUN_ENV_VALID = [
    ({"PODBW_CRI_ENDPOINT": "unix:///run/x/crio.sock"}, "discovery.cri_endpoint", "unix:///run/x/crio.sock"),
    ({"PODBW_NETNS_DIR": DIR}, "discovery.netns_dir", DIR),
    ({"PODBW_RESYNC_INTERVAL": "5"}, "discovery.resync_interval_s", 5.0),
    ({"PODBW_CRI_TIMEOUT": "0.5"}, "discovery.cri_timeout_s", 0.5),
    ({"PODBW_EGRESS_MODE": "ifb"}, "shaping.egress_mode", "ifb"),
    ({"PODBW_TAKE_OVER_FOREIGN": "true"}, "shaping.take_over_foreign", True),
    ({"PODBW_TAKE_OVER_FOREIGN": "0"}, "shaping.take_over_foreign", False),
    ({"PODBW_SAMPLE_INTERVAL": "2"}, "sampling.interval_s", 2.0),
    ({"PODBW_MAX_INTERFACES_PER_POD": "16"}, "sampling.max_interfaces_per_pod", 16),
    ({"PODBW_WEB_CONFIG_FILE": FILE}, "web.config_file", FILE),
    ({"PODBW_PEAK_WINDOW": "300"}, "sampling.peak_window_s", 300.0),
    ({"PODBW_WEB_LISTEN_ADDRESS": "127.0.0.1:9100"}, "web.listen_address", "127.0.0.1:9100"),
    ({"PODBW_LOG_LEVEL": "debug"}, "logging.level", "debug"),
    ({"PODBW_LOG_FORMAT": "json"}, "logging.format", "json"),
    ({"PODBW_ANNOTATIONS_FILE": FILE}, "annotations_file", FILE),
    ({"PODBW_CLEANUP_ON_EXIT": "on"}, "cleanup_on_exit", True),
    ({"PODBW_COLLECTOR_UNLIMITED_PODS": "false"}, "collectors.unlimited_pods", False),
    *[({f"PODBW_COLLECTOR_{e.name.upper()}": "false"}, f"collectors.{e.name}", False) for e in COLLECTORS],
    *[({f"PODBW_COLLECTOR_{e.name.upper()}": "true"}, f"collectors.{e.name}", True) for e in COLLECTORS],
    ({"PODBW_KUBERNETES": "off"}, "discovery.kubernetes", "off"),
    ({"PODBW_NODE_NAME": "node-1"}, "discovery.node_name", "node-1"),
    ({"PODBW_KUBECONFIG": FILE, "PODBW_NODE_NAME": "n1"}, "discovery.kubeconfig", FILE),
    ({"PODBW_RESYNC_INTERVAL": ""}, "discovery.resync_interval_s", 30.0),  # empty: not set
]

RUN_ENV_INVALID = [
    ("PODBW_CRI_ENDPOINT", "http://x"),
    ("PODBW_NETNS_DIR", FILE),
    ("PODBW_RESYNC_INTERVAL", "-1"),
    ("PODBW_CRI_TIMEOUT", "0"),
    ("PODBW_EGRESS_MODE", "tc"),
    ("PODBW_TAKE_OVER_FOREIGN", "maybe"),
    ("PODBW_SAMPLE_INTERVAL", "0"),
    ("PODBW_PEAK_WINDOW", "-5"),
    ("PODBW_MAX_INTERFACES_PER_POD", "-1"),
    ("PODBW_WEB_CONFIG_FILE", DIR),
    ("PODBW_WEB_LISTEN_ADDRESS", ":99999"),
    ("PODBW_COLLECTOR_UNLIMITED_PODS", "no way"),
    *[(f"PODBW_COLLECTOR_{e.name.upper()}", "maybe") for e in COLLECTORS],
    ("PODBW_LOG_LEVEL", "verbose"),
    ("PODBW_LOG_FORMAT", "xml"),
    ("PODBW_ANNOTATIONS_FILE", DIR),
    ("PODBW_CLEANUP_ON_EXIT", "2"),
    ("PODBW_KUBERNETES", "maybe"),
    ("PODBW_NODE_NAME", "UPPER"),
    ("PODBW_KUBECONFIG", DIR),
]

# The other commands' own flags: (argv, attribute, expected) and (argv, error)
OTHER_VALID = [
    (["pods", "--output", "json"], "output", "json"),
    (["pods", "--netns-dir", DIR], "netns_dir", DIR),
    (["top", "--interval", "0.5"], "interval", 0.5),
    (["top", "--once", "--no-fallback"], "no_fallback", True),
    (["top", "--url", "http://10.0.0.1:9637/metrics"], "url", "http://10.0.0.1:9637/metrics"),
    (["top", "--egress-mode", "ifb"], "egress_mode", "ifb"),
    (["top", "--annotations-file", FILE], "annotations_file", FILE),
    (["demo", "--duration", "5"], "duration", 5.0),
    (["demo", "--port", "9100"], "port", 9100),
    (["demo", "--output", "plain", "--demo-lab", "x"], "output", "plain"),
    (["dashboards", "--check", "--multi-cluster"], "multi_cluster", True),
    (["dashboards", "--output-dir", DIR], "output_dir", DIR),
    (["lab", "--log.level", "debug", "status"], "log.level", "debug"),
]

OTHER_INVALID = [
    (["pods", "--output", "yaml"], "podbw pods: error: argument --output: invalid choice 'yaml'"),
    (["pods", "--cri-timeout", "-1"], "podbw pods: error: argument --cri-timeout: '-1'"),
    (["top", "--interval", "0"], "podbw top: error: argument --interval: '0'"),
    (["top", "--egress-mode", "tc"], "podbw top: error: argument --egress-mode: invalid choice 'tc'"),
    (["demo", "--duration", "0"], "podbw demo: error: argument --duration: '0'"),
    (["demo", "--port", "70000"], "podbw demo: error: argument --port: '70000': must be between 0 and 65535"),
    (["demo", "--output", "fancy"], "podbw demo: error: argument --output: invalid choice 'fancy'"),
    (["lab", "--log.format", "xml", "status"], "podbw lab status: error: argument --log.format: invalid choice 'xml'"),
    (["--log-level", "loud", "pods"], "podbw pods: error: argument --log.level/--log-level: invalid choice 'loud'"),
]


def parse(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("argv, path, expected", RUN_VALID)
def test_run_flag_sets_its_setting(argv: list[str], path: str, expected: Any, paths: dict[str, str]) -> None:
    settings = parse(["run", *substituted(argv, paths)]).settings
    assert isinstance(settings, AgentSettings)
    assert setting_at(settings, path) == paths.get(expected, expected)


@pytest.mark.parametrize("argv, message", RUN_INVALID)
def test_run_flag_with_bad_text_is_one_line_error(
    argv: list[str], message: str, paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = parse_error(["run", *substituted(argv, paths)], capsys)
    assert err.startswith("podbw run: error: ") and message in err, err


@pytest.mark.parametrize("env, path, expected", RUN_ENV_VALID)
def test_run_variable_sets_its_setting(
    env: dict[str, str], path: str, expected: Any, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, text in env.items():
        monkeypatch.setenv(name, paths.get(text, text))
    assert setting_at(parse(["run"]).settings, path) == paths.get(expected, expected)


@pytest.mark.parametrize("name, text", RUN_ENV_INVALID)
def test_run_variable_with_bad_text_names_the_variable(
    name: str, text: str, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, paths.get(text, text))
    err = parse_error(["run"], capsys)
    assert err.startswith(f"podbw run: error: environment variable {name}: "), err


@pytest.mark.parametrize("argv, attribute, expected", OTHER_VALID)
def test_other_commands_flags(argv: list[str], attribute: str, expected: Any, paths: dict[str, str]) -> None:
    assert getattr(parse(substituted(argv, paths)), attribute) == paths.get(expected, expected)


@pytest.mark.parametrize("argv, message", OTHER_INVALID)
def test_other_commands_bad_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert message in parse_error(argv, capsys)


def run_parser() -> CommandParser:
    parser = build_parser()
    (sub,) = [action for action in parser._actions if action.dest == "command"]
    return sub.choices["run"]  # type: ignore[attr-defined]


def test_every_run_flag_and_variable_is_in_the_tables() -> None:
    declared = {d.option.flag: d.option for d in run_parser().declared}
    valid = {word for argv, _, _ in RUN_VALID for word in argv if word.startswith("--")}
    invalid = {word for argv, _ in RUN_INVALID for word in argv if word.startswith("--")}
    flags = {flag.split("=")[0] for flag in valid | invalid}
    assert set(declared) <= flags, f"flags without a table row: {set(declared) - flags}"
    switches = {flag for flag, option in declared.items() if option.switch}
    assert set(declared) - switches <= {flag.split("=")[0] for flag in invalid}, "every valued flag needs a bad value"
    env_names = {option.env for option in declared.values()}
    assert env_names == {name for env, _, _ in RUN_ENV_VALID for name in env} == {name for name, _ in RUN_ENV_INVALID}


def test_flags_and_variables_follow_the_settings_fields() -> None:
    declared = {d.option.flag: d for d in run_parser().declared}
    assert declared["--web.listen-address"].option.env == "PODBW_WEB_LISTEN_ADDRESS"
    assert declared["--cri-endpoint"].option.env == "PODBW_CRI_ENDPOINT"
    assert declared["--log.level"].option.env == "PODBW_LOG_LEVEL"
    assert {d.dest for d in declared.values()} == {dest_of(d.option) for d in declared.values()}
    assert declared["--resync-interval"].default == DiscoverySettings().resync_interval_s


def test_defaults_are_the_settings_defaults() -> None:
    settings = parse(["run"]).settings
    expected = AgentSettings()
    assert settings.discovery.cri_endpoint in AUTO_CRI_ENDPOINTS  # `auto`: what exists on this machine
    assert settings.discovery.kubernetes == "off"  # `auto`: no ServiceAccount token here
    assert dataclasses.replace(
        settings.discovery, cri_endpoint=expected.discovery.cri_endpoint, kubernetes=expected.discovery.kubernetes
    ) == expected.discovery
    assert dataclasses.replace(settings.shaping, ifb_owner="") == expected.shaping
    assert settings.shaping.ifb_owner, "derived from the endpoint and netns directory"
    assert (settings.sampling, settings.web, settings.logging) == (expected.sampling, expected.web, expected.logging)
    assert settings.collectors == expected.collectors and settings.collectors.enabled == DEFAULT_COLLECTORS


@pytest.mark.parametrize(
    "argv, env, dest, expected",
    [
        (["--log-level", "debug", "run"], {}, "log.level", "debug"),
        (["--log.level", "error", "run", "--log.level", "debug"], {}, "log.level", "debug"),
        (["--log-level", "debug", "run"], {"PODBW_LOG_LEVEL": "error"}, "log.level", "debug"),
        (["run", "--log-level", "debug"], {"PODBW_LOG_LEVEL": "error"}, "log.level", "debug"),
        (["run"], {"PODBW_LOG_LEVEL": "error"}, "log.level", "error"),
        (["pods"], {}, "log.level", None),
        (["--log.format", "json", "pods"], {}, "log.format", "json"),
        (["pods", "--log.format", "json"], {"PODBW_LOG_FORMAT": "logfmt"}, "log.format", "json"),
        (["dashboards"], {}, "log.format", "logfmt"),
    ],
)
def test_log_flags_before_or_after_the_command(
    argv: list[str], env: dict[str, str], dest: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert getattr(parse(argv), dest) == expected


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODBW_RESYNC_INTERVAL", "-1")  # never read: the flag is given
    monkeypatch.setenv("PODBW_SAMPLE_INTERVAL", "5")
    settings = parse(["run", "--resync-interval", "10"]).settings
    assert (settings.discovery.resync_interval_s, settings.sampling.interval_s) == (10.0, 5.0)


def test_hostile_text_stays_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error(["run", "--egress-mode", "pod\nlevel=ERROR msg=forged" + "x" * 500], capsys)
    assert "\\n" in err and len(err) < 300, err

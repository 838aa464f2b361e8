from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.cli import ConfigError, build_parser, settings_from_args
from sidecar.settings import Settings


def settings_from(argv: list[str]) -> Settings:
    return settings_from_args(build_parser().parse_args(["run", *argv]))


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert settings.upstream == "http://127.0.0.1:8080"
    assert (settings.host, settings.port, settings.admin_port) == ("0.0.0.0", 15000, 15020)
    assert settings.redis_url is None
    assert settings.counter_key == "streamproxy:requests"
    assert (settings.connect_timeout, settings.read_timeout) == (5, 60)
    assert (settings.drain_seconds, settings.shutdown_timeout) == (0, 30)
    assert settings.log_level == "info"
    assert settings.effective_admin_host == "0.0.0.0"
    # The proxy port's own timeouts and its listen backlog (a connection storm waits there).
    assert (settings.send_timeout, settings.pool_timeout) == (60, 5)
    assert settings.backlog >= 4096


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROXY_PORT", "16000")
    monkeypatch.setenv("STREAMPROXY_ADMIN_PORT", "16020")
    settings = settings_from(["--port", "17000"])
    assert settings.port == 17000
    assert settings.admin_port == 16020


def test_upstream_is_normalised_to_scheme_host_port() -> None:
    assert Settings(upstream="http://app:9000/").upstream == "http://app:9000"
    assert Settings(upstream="http://[::1]:9000").upstream_host == "::1"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--port", "70000"], "--port"),
        (["--admin-port", "0"], "--admin-port"),
        (["--upstream", "ftp://x:1"], "--upstream"),
        (["--upstream", "http://app:9000/path"], "--upstream"),
        (["--upstream", "http://app:notaport"], "--upstream"),
        (["--read-timeout", "-1"], "--read-timeout"),
        (["--connect-timeout", "0"], "--connect-timeout"),
        (["--drain-seconds", "-3"], "--drain-seconds"),
        (["--send-timeout", "0"], "--send-timeout"),
        (["--send-timeout", "-1"], "--send-timeout"),
        (["--pool-timeout", "0"], "--pool-timeout"),
        (["--pool-timeout", "never"], "--pool-timeout"),
        (["--backlog", "0"], "--backlog"),
        (["--backlog", "1.5"], "--backlog"),
        (["--redis-url", "http://redis:6379"], "--redis-url"),
        (["--redis-sentinels", "a:1"], "--redis-sentinel"),
        (["--redis-sentinels", "nonsense", "--redis-sentinel-master", "m"], "--redis-sentinels"),
    ],
)
def test_invalid_values_name_the_option(argv: list[str], option: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from(argv)
    assert option in str(error.value)


def test_invalid_config_exits_2_with_a_short_message_before_binding() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3
    assert "--port" in result.stderr


def test_unknown_flag_exits_2_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--no-such-flag"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--no-such-flag" in result.stderr


def test_every_setting_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        flag = "--" + name.replace("_", "-")
        assert f"`{flag}`" in readme, f"{flag} missing from the README's configuration table"
        assert f"`STREAMPROXY_{name.upper()}`" in readme


def test_proxy_and_admin_ports_must_differ() -> None:
    with pytest.raises(ConfigError) as error:
        settings_from(["--port", "15000", "--admin-port", "15000"])
    assert "--admin-port" in str(error.value)


# Guard rails (docs/guardrails.md)


def test_guard_rail_defaults() -> None:
    settings = Settings()
    assert settings.request_id is True  # like Envoy: every request to the app gets an ID
    assert settings.request_id_response is False
    assert settings.trusted_proxies == (
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    )
    assert settings.max_in_flight == 0
    assert settings.max_request_body is None
    assert settings.upstream_health_path is None


def test_guard_rail_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROXY_REQUEST_ID_RESPONSE", "true")
    monkeypatch.setenv("STREAMPROXY_MAX_REQUEST_BODY", "1048576")
    monkeypatch.setenv("STREAMPROXY_TRUSTED_PROXIES", "none")
    settings = settings_from(
        [
            "--no-request-id",
            "--max-in-flight",
            "100",
            "--upstream-health-path",
            "/healthz?deep=1",
            "--trusted-proxies",
            "10.42.0.0/16, fd00::/8",
        ]
    )
    assert settings.request_id is False
    assert settings.request_id_response is True
    assert settings.max_in_flight == 100
    assert settings.max_request_body == 1048576
    assert settings.upstream_health_path == "/healthz?deep=1"
    assert settings.trusted_proxies == "10.42.0.0/16,fd00::/8"  # the flag wins, normalised


def test_empty_health_path_means_unset() -> None:
    assert Settings(upstream_health_path="").upstream_health_path is None


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--max-in-flight", "-1"], "--max-in-flight"),
        (["--max-in-flight", "many"], "--max-in-flight"),
        (["--max-request-body", "-5"], "--max-request-body"),
        (["--max-request-body", "10MB"], "--max-request-body"),
        (["--trusted-proxies", "10.0.0.1/8"], "--trusted-proxies"),
        (["--trusted-proxies", "everyone"], "--trusted-proxies"),
        (["--trusted-proxies", ""], "--trusted-proxies"),
        (["--upstream-health-path", "healthz"], "--upstream-health-path"),
        (["--upstream-health-path", "/a b"], "--upstream-health-path"),
        (["--upstream-health-path", "/a#frag"], "--upstream-health-path"),
        (["--upstream-health-path", "/caf\u00e9"], "--upstream-health-path"),
    ],
)
def test_invalid_guard_rail_values_name_the_option(argv: list[str], option: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from(argv)
    assert option in str(error.value)


def test_invalid_guard_rail_value_exits_2_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--trusted-proxies", "10.0.0.0/33"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--trusted-proxies (STREAMPROXY_TRUSTED_PROXIES)" in result.stderr
    assert "10.0.0.0/33" in result.stderr


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--retry-for", "-1"], "--retry-for"),
        (["--retry-for", "inf"], "--retry-for"),
        (["--retry-for", "soon"], "--retry-for"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
    ],
)
def test_check_with_invalid_seconds_exits_2_in_one_line_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sidecar.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["check", *argv, "http://127.0.0.1:9/"])  # never reached: the flag is refused
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"argument {option}" in err[0]

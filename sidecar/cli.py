"""Command line: `streamproxy run | demo | echo-app | check | inject`.

Flags of `run` are generated from `Settings`, so a new setting is a new flag and a new
`STREAMPROXY_*` variable at once. Flags are parsed with every default suppressed: only the flags
given on the command line reach `Settings(...)`, where they win over the environment.
Configuration errors are one short line on stderr and exit code 2, before anything is bound.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, get_args

from pydantic import ValidationError

from sidecar import __version__
from sidecar.settings import Settings

EXIT_CONFIG_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (the usage block would push past three lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _seconds(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, at least (or above) `minimum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = "at least" if inclusive else "more than"
            raise argparse.ArgumentTypeError(
                f"{text}: must be a finite number of seconds, {bound} {minimum:g}"
            )
        return value

    return parse


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return "STREAMPROXY_" + field.upper()


# Metavars where the field name's last word would mislead (`--max-in-flight FLIGHT`).
METAVARS = {"max_in_flight": "N", "max_request_body": "BYTES", "trusted_proxies": "CIDRS"}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = (
            "unset" if default is None else str(default).lower() if default is False else default
        )
        help_text = f"{info.description} [env {env_name(name)}; default {shown}]"
        annotation = info.annotation
        if annotation is bool:
            parser.add_argument(
                flag_name(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        choices = None
        if name == "log_level":
            choices = list(get_args(get_args(annotation)[0]) or get_args(annotation))
        parser.add_argument(
            flag_name(name),
            dest=name,
            metavar=METAVARS.get(name, name.split("_")[-1].upper()),
            default=argparse.SUPPRESS,
            choices=choices,
            help=help_text,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamproxy",
        description="A streaming HTTP sidecar proxy that counts every request in a shared Redis.",
    )
    parser.add_argument("--version", action="version", version=f"streamproxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="run the proxy (proxy port + admin port)",
        description="Forward the pod's traffic to the app, count it, serve the admin port. "
        "Every flag is also an environment variable; flags win.",
    )
    _add_settings_flags(run)

    demo = commands.add_parser(
        "demo",
        help="run the proxy in front of a built-in echo app (no app of your own needed)",
        description="Start the built-in echo app on --app-port and the proxy in front of it.",
    )
    demo.add_argument("--app-port", type=int, default=8080, help="echo app port [8080]")
    _add_settings_flags(demo)

    echo = commands.add_parser(
        "echo-app", help="run the built-in echo app (the chart's demo workload)"
    )
    echo.add_argument("--host", default="0.0.0.0", help="bind address [0.0.0.0]")
    echo.add_argument("--port", type=int, default=8080, help="port [8080]")

    check = commands.add_parser(
        "check", help="GET a URL and exit 0 on a 2xx (for probes and `helm test`)"
    )
    check.add_argument("url", nargs="+", help="URL(s) that must answer 2xx")
    check.add_argument(
        "--timeout", type=_seconds(0, inclusive=False), default=5.0, help="seconds per URL [5]"
    )
    check.add_argument(
        "--retry-for",
        type=_seconds(0, inclusive=True),
        default=0.0,
        metavar="SECONDS",
        help="retry a failing URL every 0.5 s for up to this long (all URLs together) [0]",
    )
    check.add_argument(
        "--expect-json",
        action="append",
        default=[],
        metavar="KEY",
        help="also require this key in the JSON body (repeatable)",
    )

    inject = commands.add_parser(
        "inject",
        help="add the streamproxy sidecar to Kubernetes manifests (files, dirs or - for stdin)",
        add_help=False,
    )
    inject.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build `Settings` from the flags given; raise `ConfigError` naming the option."""
    given = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


class ConfigError(Exception):
    """Invalid configuration: the message names the option."""


def describe_validation_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = [str(part) for part in error.get("loc", ()) if str(part) in Settings.model_fields]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        # Model-level checks start their message with the field they blame.
        first_word = message.split(" ", 1)[0].rstrip(":")
        if first_word in Settings.model_fields:
            location = [first_word]
            message = message.split(" ", 1)[1] if " " in message else message
    if location:
        name = location[0]
        return f"{flag_name(name)} ({env_name(name)}): {message}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["inject"]:
        try:
            from sidecar.k8s import inject
        except ImportError as exc:
            print(
                f"streamproxy: error: inject needs the Kubernetes client ({exc.name} missing): "
                "pip install 'streamproxy[inject]'",
                file=sys.stderr,
            )
            return EXIT_CONFIG_ERROR
        exit_code: int = inject.main(argv[1:])
        return exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    command: str = args.command
    try:
        if command == "run":
            from sidecar.server import run

            return run(settings_from_args(args))
        if command == "demo":
            from sidecar.demo import run_demo

            return run_demo(settings_from_args(args), app_port=args.app_port)
        if command == "echo-app":
            from sidecar.demo import run_echo_app

            return run_echo_app(host=args.host, port=args.port)
        if command == "check":
            from sidecar.check import check_urls

            return check_urls(
                args.url,
                timeout=args.timeout,
                expect_json=args.expect_json,
                retry_for=args.retry_for,
            )
    except ConfigError as exc:
        print(f"streamproxy: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    parser.error(f"unknown command {command!r}")  # pragma: no cover - argparse rejects it first

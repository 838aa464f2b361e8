"""`streamproxy inject`: add the streamproxy sidecar to Kubernetes manifests.

Like `linkerd inject`: reads files, directories and `-` (stdin), multi-document YAML and `List`s;
writes the YAML to stdout and one report line per object to stderr. Injecting is idempotent: an
existing `streamproxy` container (native or classic) is removed before the new one is added, so
injecting twice gives what injecting once gives. The container itself comes from
`sidecar.k8s.sidecar`, the same definition the Helm chart renders.

Exit codes: 0 done, 1 an input could not be read or holds something that is not a manifest,
2 invalid options (a short message naming the option, as `streamproxy run` does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from sidecar.cli import EXIT_CONFIG_ERROR, METAVARS, describe_validation_error, flag_name
from sidecar.k8s.sidecar import (
    DEFAULT_IMAGE,
    DEFAULT_PRE_STOP_SECONDS,
    DEFAULT_RESOURCES,
    K8S_DEFAULTS,
    SidecarSpec,
    inject_pod_spec,
)
from sidecar.lifecycle import MAX_DRAIN_WAIT
from sidecar.settings import Settings

OPT_OUT = "streamproxy.io/inject"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Settings that are not options: the pod name comes from the Downward API, and a password only
# ever from a Secret (--redis-password-secret).
NOT_OPTIONS = {"pod_name", "redis_password"}


class InjectError(Exception):
    """An input that cannot be injected: the message names the file."""


class _FlagsOnly(Settings):
    """Settings from the options alone: the injector's environment must not leak into manifests."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamproxy inject",
        description="Add the streamproxy sidecar to the workloads in Kubernetes manifests. "
        "Writes YAML to stdout and one line per object to stderr.",
        allow_abbrev=False,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE|DIR|-", help="manifests; - is stdin")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"sidecar image [{DEFAULT_IMAGE}]")
    parser.add_argument(
        "--image-pull-policy", default="IfNotPresent", choices=["Always", "IfNotPresent", "Never"]
    )
    parser.add_argument(
        "--classic",
        action="store_true",
        help="a classic second container instead of a native sidecar (< 1.29)",
    )
    parser.add_argument(
        "--upstream-port",
        type=int,
        metavar="N",
        help="the app's port: sets --upstream http://127.0.0.1:N",
    )
    parser.add_argument(
        "--redis-password-secret",
        metavar="NAME:KEY",
        help="Secret and key holding the Redis password",
    )
    parser.add_argument("--redis-password", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pre-stop-seconds",
        type=float,
        metavar="S",
        default=DEFAULT_PRE_STOP_SECONDS,
        help="app containers without a preStop hook get one: the sidecar's /drain, held S "
        f"seconds so keep-alive clients leave while the app serves; 0: none "
        f"[{DEFAULT_PRE_STOP_SECONDS:g}]",
    )
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            default = DEFAULT_RESOURCES.get(kind, {}).get(resource, "")
            parser.add_argument(
                f"--{resource}-{kind.removesuffix('s')}",
                metavar="QTY",
                default=default,
                help=f"sidecar {resource} {kind} [{default or 'none'}]",
            )
    for name, info in Settings.model_fields.items():
        if name in NOT_OPTIONS:
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if info.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = METAVARS.get(name, name.split("_")[-1].upper())
        default = K8S_DEFAULTS.get(name, info.default)
        shown = "unset" if default is None else default
        parser.add_argument(flag_name(name), help=f"{info.description} [{shown}]", **kwargs)
    return parser


def spec_from_args(args: argparse.Namespace) -> SidecarSpec:
    if args.redis_password is not None:
        raise ValueError(
            "--redis-password: a password never goes into a manifest; "
            "use --redis-password-secret NAME:KEY"
        )
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if name not in NOT_OPTIONS and hasattr(args, name)
    }
    if args.upstream_port is not None:
        if "upstream" in given:
            raise ValueError("--upstream-port and --upstream: give one")
        given["upstream"] = f"http://127.0.0.1:{args.upstream_port}"
    try:
        settings = _FlagsOnly(**{**K8S_DEFAULTS, **given})
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None
    secret = None
    if args.redis_password_secret:
        name, _, key = args.redis_password_secret.partition(":")
        if not name or not key:
            raise ValueError("--redis-password-secret: expected NAME:KEY")
        secret = (name, key)
    resources = {
        kind: {
            res: qty
            for res in ("cpu", "memory")
            if (qty := getattr(args, f"{res}_{kind.removesuffix('s')}"))
        }
        for kind in ("requests", "limits")
    }
    if not 0 <= args.pre_stop_seconds <= MAX_DRAIN_WAIT:
        raise ValueError(f"--pre-stop-seconds: a number of seconds from 0 to {MAX_DRAIN_WAIT:g}")
    return SidecarSpec(
        settings=settings,
        pre_stop_seconds=args.pre_stop_seconds,
        image=args.image,
        image_pull_policy=args.image_pull_policy,
        native=not args.classic,
        password_secret=secret,
        resources={kind: values for kind, values in resources.items() if values},
    )


# Reading


def _paths(argument: str) -> Iterator[Path]:
    path = Path(argument)
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        yield from sorted(found)
    else:
        yield path


def read_documents(inputs: Sequence[str], stdin: Any) -> list[tuple[str, Any]]:
    documents: list[tuple[str, Any]] = []
    for argument in inputs:
        sources = [("<stdin>", stdin.read())] if argument == "-" else []
        for path in [] if argument == "-" else _paths(argument):
            try:
                sources.append((str(path), path.read_text()))
            except OSError as exc:
                raise InjectError(f"{path}: {exc.strerror or exc}") from None
        for origin, text in sources:
            try:
                loaded = [doc for doc in yaml.safe_load_all(text) if doc is not None]
            except yaml.YAMLError as exc:
                raise InjectError(f"{origin}: not YAML: {exc}".splitlines()[0]) from None
            documents += [(origin, doc) for doc in loaded]
    return documents


# Injecting


def _dig(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _opted_out(obj: dict[str, Any], pod_path: tuple[str, ...]) -> bool:
    template = _dig(obj, pod_path[:-1]) if len(pod_path) > 1 else None
    for holder in (obj, template or {}):
        annotations = (holder.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(OPT_OUT, "")).lower() in ("disabled", "false"):
            return True
    return False


def inject_object(obj: Any, spec: SidecarSpec, origin: str, report: list[str]) -> None:
    if not isinstance(obj, dict) or "kind" not in obj:
        raise InjectError(f"{origin}: not a Kubernetes object")
    kind = str(obj["kind"])
    if kind.endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            inject_object(item, spec, origin, report)
        return
    name = (obj.get("metadata") or {}).get("name", "<unnamed>")
    label = f"{kind.lower()}/{name}"
    if kind == "Service":
        report.append(f"{label} skipped: not a workload{_service_hint(obj, spec)}")
        return
    pod_path = POD_SPEC_PATHS.get(kind)
    if pod_path is None:
        report.append(f"{label} skipped: not a workload")
        return
    if _opted_out(obj, pod_path):
        report.append(f"{label} skipped: {OPT_OUT} is disabled")
        return
    pod = _dig(obj, pod_path)
    if pod is None or not isinstance(pod.get("containers"), list):
        raise InjectError(f"{origin}: {label} has no pod spec with containers")
    try:
        notes = inject_pod_spec(pod, spec)
    except ValueError as exc:
        report.append(f"{label} skipped: {exc}")
        return
    mode = "native sidecar" if spec.native else "classic sidecar"
    if not spec.native and kind in ("Job", "CronJob"):
        mode += "; the app must POST /quitquitquit to the admin port for the Job to finish"
    report.append(f"{label} {notes[0]} ({'; '.join([mode, *notes[1:]])})")


def _service_hint(service: dict[str, Any], spec: SidecarSpec) -> str:
    ports = (service.get("spec") or {}).get("ports") or []
    bypassing = [p.get("targetPort", p.get("port")) for p in ports if isinstance(p, dict)]
    proxy = spec.settings.port
    sidecar_ports = (proxy, spec.settings.admin_port, "proxy", "proxy-admin")
    bypassing = [t for t in bypassing if t not in sidecar_ports]
    if not bypassing:
        return ""
    shown = ", ".join(str(t) for t in bypassing)
    return f" (targetPort {shown} bypasses the sidecar; use {proxy})"


def dump(documents: Sequence[Any]) -> str:
    return "---\n".join(
        yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
        for doc in documents
    )


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"streamproxy inject: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    report: list[str] = []
    try:
        documents = read_documents(args.inputs, sys.stdin)
        for origin, doc in documents:
            inject_object(doc, spec, origin, report)
    except InjectError as exc:
        print(f"streamproxy inject: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(dump([doc for _, doc in documents]))
    for line in report:
        print(line, file=sys.stderr)
    return 0

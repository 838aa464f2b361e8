"""The streamproxy sidecar container, built with the `kubernetes` client's models.

This is what `streamproxy inject` adds to a pod (`inject_pod_spec`), and the one definition of
the container: its fixed parts (args, port names, probes, security context) and its variables
(one per `Settings` field, in field order, each with the chart value it comes from) are defined
here. `chart_file()` writes them to charts/streamproxy/files/sidecar.yaml (`make manifests`
regenerates it, a test fails when it is stale), which the chart's named template
`streamproxy.sidecarContainer` renders from; tests/inject/test_parity.py asserts that chart and
injector give equal containers for the same settings. Unset settings are left out, and numbers
are spelled the way Helm spells them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from kubernetes import client as k8s
from pydantic import SecretStr

from sidecar import __version__
from sidecar.settings import Settings

CONTAINER_NAME = "streamproxy"
DEFAULT_IMAGE = f"streamproxy:{__version__}"
IMAGE_UID = 10001
# Kubernetes defaults that differ from the binary's (the chart's values.yaml has the same):
# keep serving a little after SIGTERM while endpoints drop the pod.
K8S_DEFAULTS: dict[str, Any] = {"drain_seconds": 5.0}
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}
# Added to preStop + drain + shutdown for the pod's terminationGracePeriodSeconds.
GRACE_MARGIN_SECONDS = 5
# The app containers' preStop hook, as the chart's app.preStopSleepSeconds: the kubelet's
# httpGet of the sidecar's /drain (docs/kubernetes.md, "Shutdown").
DEFAULT_PRE_STOP_SECONDS = 5.0
DRAIN_TOKEN_HEADER = "X-Streamproxy-Drain-Token"
# Ports by name -> the setting that holds the number.
PORTS = (("proxy", "port"), ("proxy-admin", "admin_port"))
# Probes on the admin port: path, period, timeout, failure threshold. Startup checks only that
# the process is up: a native sidecar must pass it before the app starts, so it cannot wait for
# the app the way readiness (/status) does.
PROBES: dict[str, tuple[str, int, int, int]] = {
    "startupProbe": ("/livez", 1, 1, 30),
    "readinessProbe": ("/status", 2, 2, 2),
    "livenessProbe": ("/livez", 10, 2, 3),
}
SECURITY_CONTEXT = k8s.V1SecurityContext(
    run_as_non_root=True,
    run_as_user=IMAGE_UID,
    run_as_group=IMAGE_UID,
    read_only_root_filesystem=True,
    allow_privilege_escalation=False,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
)
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
# Settings whose variable the chart does not copy from a value of the same name.
SPECIAL_SOURCES = {
    "upstream": "upstream",  # http://127.0.0.1:<app.port>
    "redis_url": "redisUrl",  # redis.url, or the in-chart Redis
    "redis_password": "redisPasswordSecret",  # only ever from a Secret
    "pod_name": "podName",  # the Downward API
}
CHART_FILE_HEADER = (
    "# Generated from sidecar/k8s/sidecar.py by `make manifests`: do not edit.\n"
    "# The streamproxy sidecar's fixed parts and variables, rendered by _sidecar.tpl.\n"
)
# Key order of the rendered container, for readable output.
_FIRST_KEYS = ["name", "image", "imagePullPolicy", "args", "restartPolicy", "ports", "env"]
KEY_ORDER = [*_FIRST_KEYS, *PROBES, "resources", "securityContext", "terminationMessagePolicy"]


@dataclass(frozen=True)
class SidecarSpec:
    """Everything that decides the container: the proxy's settings and how it runs in the pod."""

    settings: Settings
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    native: bool = True
    # (Secret name, key) of the Redis password; never a literal password in a manifest.
    password_secret: tuple[str, str] | None = None
    resources: dict[str, dict[str, str]] = field(default_factory=lambda: DEFAULT_RESOURCES)
    # Seconds the app containers' preStop hook (/drain) holds their SIGTERM back; 0: no hook.
    pre_stop_seconds: float = DEFAULT_PRE_STOP_SECONDS

    @property
    def grace_period(self) -> int:
        busy = self.pre_stop_seconds + self.settings.drain_seconds + self.settings.shutdown_timeout
        return math.ceil(busy) + GRACE_MARGIN_SECONDS

    def pre_stop_hook(self) -> dict[str, Any]:
        """The app container's preStop hook, as the chart renders it."""
        get: dict[str, Any] = {
            "path": f"/drain?seconds={go_number(self.pre_stop_seconds)}",
            "port": self.settings.admin_port,
        }
        if self.settings.drain_token is not None:
            token = self.settings.drain_token.get_secret_value()
            get["httpHeaders"] = [{"name": DRAIN_TOKEN_HEADER, "value": token}]
        return {"httpGet": get}


def go_number(value: float) -> str:
    """Spell a number the way Go's `%v` (so Helm's `toString`) does: 5.0 -> 5, 1e6 -> 1e+06."""
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    point = len(mantissa) + exponent - 1  # decimal exponent of the first digit
    prefix = "-" if sign else ""
    # strconv.FormatFloat(v, 'g', -1, 64): the exponent form below 1e-4 and from 1e6 on (Helm
    # holds the numbers of a values file as float64).
    if point < -4 or point >= 6:
        fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
        return f"{prefix}{mantissa[0]}{fraction}e{'+' if point >= 0 else '-'}{abs(point):02d}"
    return prefix + format(Decimal(repr(abs(float(value)))).normalize(), "f")


def env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return go_number(value) if isinstance(value, float) else str(value)


def chart_value(setting: str) -> str:
    """The chart value of a setting: `redis_url` -> `redis.url`, `x_y` -> `proxy.xY`."""
    group = "redis" if setting.startswith("redis_") else "proxy"
    head, *rest = setting.removeprefix(f"{group}_").split("_")
    return f"{group}.{head}{''.join(part.title() for part in rest)}"


def env_table() -> list[dict[str, Any]]:
    """Every variable of the sidecar, in `Settings` order, with where its value comes from."""
    rows: list[dict[str, Any]] = []
    for name, info in Settings.model_fields.items():
        row: dict[str, Any] = {
            "name": "POD_NAME" if name == "pod_name" else f"STREAMPROXY_{name.upper()}",
            "setting": name,
        }
        if name in SPECIAL_SOURCES:
            row["from"] = SPECIAL_SOURCES[name]
        else:
            row["value"] = chart_value(name)
            if info.annotation in (int, int | None):
                row["int"] = True  # Helm holds values-file numbers as float64
        rows.append(row)
    return rows


def chart_file() -> str:
    """charts/streamproxy/files/sidecar.yaml: what the chart's template renders from."""
    definition = {
        "name": CONTAINER_NAME,
        "args": ["run"],
        "ports": [{"name": name, "setting": setting} for name, setting in PORTS],
        "probes": {
            probe: {
                "path": path,
                "periodSeconds": period,
                "timeoutSeconds": timeout,
                "failureThreshold": failures,
            }
            for probe, (path, period, timeout, failures) in PROBES.items()
        },
        "securityContext": to_dict(SECURITY_CONTEXT),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "env": env_table(),
    }
    return CHART_FILE_HEADER + yaml.safe_dump(definition, sort_keys=False)


def sidecar_env(spec: SidecarSpec) -> list[k8s.V1EnvVar]:
    env: list[k8s.V1EnvVar] = []
    for row in env_table():
        source = row.get("from")
        if source == "podName":
            pod_name = k8s.V1ObjectFieldSelector(field_path="metadata.name")
            value_from = k8s.V1EnvVarSource(field_ref=pod_name)
            env.append(k8s.V1EnvVar(name=row["name"], value_from=value_from))
            continue
        if source == "redisPasswordSecret":
            if spec.password_secret:
                secret, key = spec.password_secret
                selector = k8s.V1SecretKeySelector(name=secret, key=key)
                value_from = k8s.V1EnvVarSource(secret_key_ref=selector)
                env.append(k8s.V1EnvVar(name=row["name"], value_from=value_from))
            continue
        value = getattr(spec.settings, row["setting"])
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            continue
        env.append(k8s.V1EnvVar(name=row["name"], value=env_value(value)))
    return env


def _probe(path: str, period: int, timeout: int, failures: int, *, port: int) -> k8s.V1Probe:
    return k8s.V1Probe(
        http_get=k8s.V1HTTPGetAction(path=path, port=port),
        period_seconds=period,
        timeout_seconds=timeout,
        failure_threshold=failures,
    )


def _resources(resources: dict[str, dict[str, str]]) -> k8s.V1ResourceRequirements | None:
    requests, limits = resources.get("requests"), resources.get("limits")
    return k8s.V1ResourceRequirements(requests=requests, limits=limits) if resources else None


def sidecar_container(spec: SidecarSpec) -> k8s.V1Container:
    settings = spec.settings
    admin = settings.admin_port
    return k8s.V1Container(
        name=CONTAINER_NAME,
        image=spec.image,
        image_pull_policy=spec.image_pull_policy,
        args=["run"],
        restart_policy="Always" if spec.native else None,
        ports=[
            k8s.V1ContainerPort(name=name, container_port=getattr(settings, key), protocol="TCP")
            for name, key in PORTS
        ],
        env=sidecar_env(spec),
        startup_probe=_probe(*PROBES["startupProbe"], port=admin),
        readiness_probe=_probe(*PROBES["readinessProbe"], port=admin),
        liveness_probe=_probe(*PROBES["livenessProbe"], port=admin),
        resources=_resources(spec.resources),
        security_context=SECURITY_CONTEXT,
        termination_message_policy=TERMINATION_MESSAGE_POLICY,
    )


def to_dict(model: object) -> Any:
    """A model as the plain, camelCase structure that goes into YAML (unset fields left out)."""
    return k8s.ApiClient().sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


def sidecar_container_dict(spec: SidecarSpec) -> dict[str, Any]:
    raw: dict[str, Any] = to_dict(sidecar_container(spec))
    ordered = {key: raw[key] for key in KEY_ORDER if key in raw}
    ordered.update({key: value for key, value in raw.items() if key not in ordered})
    return ordered


def parse_pod_spec(raw: dict[str, Any]) -> k8s.V1PodSpec:
    """Check a pod spec against the models (names, types); raise ValueError when it is not one."""
    # The public `deserialize` changed signature across client versions (a response object,
    # then text + content type); the dict-level deserializer behind it has not.
    deserialize = k8s.ApiClient()._ApiClient__deserialize  # type: ignore[attr-defined]
    try:
        parsed = deserialize(json.loads(json.dumps(raw)), "V1PodSpec")
    except (TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a pod spec: {exc}") from None
    if not isinstance(parsed, k8s.V1PodSpec):
        raise ValueError("not a pod spec")
    return parsed


def _remove_sidecar(pod: dict[str, Any]) -> bool:
    found = False
    for key in ("initContainers", "containers"):
        if isinstance(pod.get(key), list):
            kept = [
                c for c in pod[key] if not (isinstance(c, dict) and c.get("name") == CONTAINER_NAME)
            ]
            found = found or len(kept) != len(pod[key])
            pod[key] = kept
    if pod.get("initContainers") == []:
        del pod["initContainers"]
    return found


def _is_drain_hook(hook: object) -> bool:
    """A hook an earlier injection (or the chart) made: replaced, never kept."""
    get = hook.get("httpGet") if isinstance(hook, dict) else None
    return isinstance(get, dict) and str(get.get("path", "")).startswith("/drain")


def _add_drain_hooks(pod: dict[str, Any], spec: SidecarSpec) -> list[str]:
    """Give each app container without a preStop hook the sidecar's /drain as one (a native
    sidecar would hear of the pod's end only once the app had exited); keep theirs."""
    hook = spec.pre_stop_hook()
    notes = []
    for app in pod["containers"]:
        if not isinstance(app, dict) or app.get("name") == CONTAINER_NAME:
            continue
        lifecycle = app.get("lifecycle") or {}
        own = lifecycle.get("preStop")
        if own is not None and not _is_drain_hook(own):
            notes.append(f"container {app.get('name')} keeps its own preStop hook (no /drain)")
            continue
        app["lifecycle"] = {**lifecycle, "preStop": hook}
    return notes


def inject_pod_spec(pod: dict[str, Any], spec: SidecarSpec) -> list[str]:
    """Inject in place; return notes for the report. Raise ValueError, untouched, if it can't."""
    trial = {key: list(value) if isinstance(value, list) else value for key, value in pod.items()}
    had_sidecar = _remove_sidecar(trial)
    model = parse_pod_spec(trial)
    if model.host_network:
        raise ValueError("hostNetwork pods share the node's ports")
    taken = {spec.settings.port, spec.settings.admin_port}
    for other in (model.init_containers or []) + (model.containers or []):
        for port in other.ports or []:
            if port.container_port in taken:
                raise ValueError(f"container {other.name} already uses port {port.container_port}")
    _remove_sidecar(pod)
    container = sidecar_container_dict(spec)
    if spec.native:
        # Insert initContainers just before containers, where people look for it.
        init = [*pod.get("initContainers", []), container]
        rebuilt = {k: v for k, v in pod.items() if k != "initContainers"}
        pod.clear()
        for key, value in rebuilt.items():
            if key == "containers":
                pod["initContainers"] = init
            pod[key] = value
        pod.setdefault("initContainers", init)
    else:
        pod["containers"].append(container)
    notes = ["re-injected" if had_sidecar else "injected"]
    if spec.pre_stop_seconds > 0:
        notes += _add_drain_hooks(pod, spec)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not isinstance(grace, int) or grace < spec.grace_period:
        pod["terminationGracePeriodSeconds"] = spec.grace_period
        notes.append(f"terminationGracePeriodSeconds {grace} -> {spec.grace_period}")
    return notes

"""Run a pod template rendered by `helm template` in Docker, the way the kubelet would.

No Kubernetes can run on the CI machines, but a container engine can, and a pod is only
containers sharing one network namespace. `DockerPod` follows the kubelet for the parts of the
spec our chart uses and fails loudly on anything else (an unknown volume type, an env source it
cannot fill), so the pod tier never silently tests something other than what the chart renders:

- a pause container owns the pod's network and IPC namespaces; every container joins them
  (`--network container:`, `--ipc container:`), so they reach each other on 127.0.0.1;
- `command` replaces the image's ENTRYPOINT (and drops its CMD), `args` replaces CMD;
- env: `value`, `fieldRef` (pod name, namespace, pod IP) and the service links the kubelet adds
  for every Service of the namespace (`enableServiceLinks`, on by default);
- securityContext, the container's over the pod's: runAsUser/runAsGroup, fsGroup and
  supplementalGroups as extra groups, runAsNonRoot checked against the image's user the way the
  kubelet refuses to start a root container, readOnlyRootFilesystem, capabilities,
  allowPrivilegeEscalation (no_new_privs); seccomp RuntimeDefault is the engine's default profile;
- emptyDir volumes (tmpfs, mode 0777 like the kubelet's), memory limits, CPU requests as shares;
- init containers in order: a run-to-completion one must exit 0; a native sidecar
  (`restartPolicy: Always`) is started and its startup probe must pass before the next container
  starts; then the regular containers.

The kubelet probes the pod IP from the node, outside the pod's network namespace. Here every
declared container port is published on 127.0.0.1 of the host, and probes go through that
published port: the engine's proxy connects to the pod from outside its namespace, as the
kubelet would, while the test itself only ever talks to loopback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

LABEL = "io.streamproxy.pod-tier"


class PodSpecError(Exception):
    """The rendered spec uses something the pod tier cannot run faithfully."""


def docker_cmd() -> list[str]:
    return shlex.split(os.environ.get("DOCKER", "docker"))


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*docker_cmd(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


def engine_problem() -> str | None:
    """None when an engine answers, else why not."""
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=15)
    except FileNotFoundError:
        return f"no docker client ({' '.join(docker_cmd())})"
    except subprocess.TimeoutExpired:
        return "the container engine does not answer"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return "no container engine answers" + (f" ({lines[-1]})" if lines else "")
    return None


# Rendered manifests


def render_chart(
    helm: str, chart: str, release: str, namespace: str, values: dict[str, str]
) -> list[dict[str, Any]]:
    argv = [helm, "template", release, chart, "--namespace", namespace]
    for key, value in values.items():
        argv += ["--set", f"{key}={value}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"helm template failed: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    names = [f"{d.get('kind')}/{d['metadata']['name']}" for d in docs]
    raise LookupError(f"{kind}/{name} not rendered; have {names}")


def is_native_sidecar(container: dict[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def service_links(services: list[dict[str, Any]], cluster_ips: dict[str, str]) -> dict[str, str]:
    """The env vars the kubelet adds for each Service (docker-links style)."""
    env: dict[str, str] = {}
    for svc in services:
        name = svc["metadata"]["name"]
        ip = cluster_ips[name]
        prefix = name.upper().replace("-", "_")
        ports = svc["spec"].get("ports", [])
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            number, proto = port["port"], port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
            base = f"{prefix}_PORT_{number}_{proto}"
            env[base] = f"{proto.lower()}://{ip}:{number}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(number)
            env[f"{base}_ADDR"] = ip
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
    return env


# Probes


@dataclass
class ProbeResult:
    ok: bool
    detail: str
    seconds: float


def run_probe(pod: DockerPod, container: dict[str, Any], probe: dict[str, Any]) -> ProbeResult:
    timeout = float(probe.get("timeoutSeconds", 1))
    start = time.monotonic()
    if "httpGet" in probe:
        ok, detail = http_get_action(pod, container, probe["httpGet"], timeout, "kube-probe/1.35")
    elif "tcpSocket" in probe:
        port = pod.host_port(resolve_port(container, probe["tcpSocket"]["port"]))
        # A connect to the published port only proves the engine's proxy listens: the kubelet
        # sees a refusal from the pod, the proxy turns it into an immediate close. Read to tell.
        ok, detail = tcp_reaches_listener(port, timeout)
    elif "exec" in probe:
        proc = docker(
            "exec",
            pod.container_name(container["name"]),
            *probe["exec"]["command"],
            check=False,
            timeout=timeout + 5,
        )
        ok, detail = proc.returncode == 0, f"exit {proc.returncode}"
    else:
        raise PodSpecError(f"unsupported probe {sorted(probe)}")
    return ProbeResult(ok, detail, time.monotonic() - start)


def http_get_action(
    pod: DockerPod, container: dict[str, Any], get: dict[str, Any], timeout: float, agent: str
) -> tuple[bool, str]:
    """A probe's or a lifecycle hook's httpGet, as the kubelet makes it: to the pod, on a port
    of `container` (a name resolves among that container's ports only), 2xx/3xx is success."""
    if get.get("host"):
        raise PodSpecError("httpGet.host is not supported (the kubelet default is the pod IP)")
    if get.get("scheme", "HTTP") != "HTTP":
        raise PodSpecError("only HTTP probes are supported")
    port = pod.host_port(resolve_port(container, get["port"]))
    headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
    headers.setdefault("User-Agent", agent)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", get.get("path", "/"), headers=headers)
        resp = conn.getresponse()
        resp.read()
        return 200 <= resp.status < 400, f"HTTP {resp.status}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def tcp_reaches_listener(port: int, timeout: float) -> tuple[bool, str]:
    """True when something in the pod accepted the connection behind the published port.

    The engine's userland proxy accepts on 127.0.0.1 first and closes at once when the pod
    refuses; a real listener leaves the connection open (silent, or talking).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(min(timeout, 0.5))
            try:
                data = sock.recv(1)
            except TimeoutError:
                return True, "connected (silent)"
            except ConnectionResetError:
                return False, "reset by the pod side"
            return (bool(data), "connected" if data else "closed at once: nothing listens")
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise PodSpecError(f"probe port {port!r} is not a declared port of {container['name']}")


def wait_probe(
    pod: DockerPod,
    container: dict[str, Any],
    probe: dict[str, Any],
    want: bool = True,
    budget: float | None = None,
) -> tuple[float, list[ProbeResult]]:
    """Probe like the kubelet (initial delay, period) until it gives `want` — the success
    threshold for a pass, the failure threshold for a fail. Returns the seconds it took.

    Raises AssertionError when the kubelet would have given up (failureThreshold periods for a
    startup probe) or `budget` seconds pass.
    """
    period = float(probe.get("periodSeconds", 10))
    needed = (
        int(probe.get("successThreshold", 1)) if want else int(probe.get("failureThreshold", 3))
    )
    if budget is None:
        budget = float(probe.get("initialDelaySeconds", 0)) + period * int(
            probe.get("failureThreshold", 3)
        )
    start = time.monotonic()
    time.sleep(float(probe.get("initialDelaySeconds", 0)))
    history: list[ProbeResult] = []
    streak = 0
    while True:
        result = run_probe(pod, container, probe)
        history.append(result)
        streak = streak + 1 if result.ok == want else 0
        elapsed = time.monotonic() - start
        if streak >= needed:
            return elapsed, history
        if elapsed + period > budget + period / 2:
            tail = [(round(r.seconds, 2), r.ok, r.detail) for r in history[-5:]]
            raise AssertionError(
                f"{container['name']}: probe never {'passed' if want else 'failed'} within "
                f"{budget:.0f}s ({len(history)} tries, last: {tail})"
            )
        time.sleep(max(0.0, period - result.seconds))


# The pod


@dataclass
class DockerPod:
    """A pod template run as containers around one pause container."""

    name: str
    namespace: str
    template: dict[str, Any]
    run_id: str
    pause_image: str
    services: list[dict[str, Any]] = field(default_factory=list)
    cluster_ips: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.template["spec"]
        return spec

    def containers(self) -> list[dict[str, Any]]:
        return [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]

    def container(self, name: str) -> dict[str, Any]:
        for c in self.containers():
            if c["name"] == name:
                return c
        raise LookupError(f"no container {name!r} in pod {self.name}")

    def container_name(self, name: str) -> str:
        return f"sp-pod-{self.run_id}-{self.name}-{name}"

    @property
    def pause_name(self) -> str:
        return self.container_name("pause")

    # Sandbox

    def start_sandbox(self) -> None:
        ports = sorted(
            {int(p["containerPort"]) for c in self.containers() for p in c.get("ports", [])}
        )
        argv = [
            "run",
            "-d",
            "--name",
            self.pause_name,
            "--label",
            f"{LABEL}={self.run_id}",
            "--hostname",
            self.name[:63],
            "--ipc",
            "shareable",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "65535:65535",
            "--entrypoint",
            "sleep",
        ]
        for host, ip in sorted(self.hosts.items()):
            argv += ["--add-host", f"{host}:{ip}"]
        for port in ports:
            argv += ["-p", f"127.0.0.1::{port}/tcp"]
        argv += [self.pause_image, "infinity"]
        docker(*argv)
        self.started.append(self.pause_name)

    def pod_ip(self) -> str:
        out = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", self.pause_name).stdout
        return out.strip()

    def host_port(self, port: int) -> int:
        out = docker("port", self.pause_name, f"{port}/tcp").stdout
        for line in out.splitlines():
            if line.startswith("127.0.0.1:"):
                return int(line.rsplit(":", 1)[1])
        raise PodSpecError(f"port {port} of pod {self.name} is not a declared containerPort")

    # Containers

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.spec.get("enableServiceLinks", True):
            env.update(service_links(self.services, self.cluster_ips))
        env["HOSTNAME"] = self.name
        for item in c.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            fields = {
                "metadata.name": self.name,
                "metadata.namespace": self.namespace,
                "status.podIP": self.pod_ip(),
                "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            }
            if ref not in fields:
                raise PodSpecError(f"{c['name']}: env {item['name']} source not supported: {item}")
            env[item["name"]] = fields[ref]
        if c.get("envFrom"):
            raise PodSpecError(f"{c['name']}: envFrom is not supported")
        return env

    def _security(self, c: dict[str, Any], image_user: str) -> list[str]:
        pod = self.spec.get("securityContext", {})
        ctx = {
            **{
                k: pod[k]
                for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
                if k in pod
            },
            **c.get("securityContext", {}),
        }
        argv: list[str] = []
        user = ctx.get("runAsUser")
        group = ctx.get("runAsGroup")
        if ctx.get("runAsNonRoot"):
            uid = user if user is not None else image_user.split(":")[0] or "0"
            if not str(uid).isdigit():
                raise AssertionError(
                    f"{c['name']}: image user {image_user!r} is not numeric, the kubelet cannot "
                    "verify runAsNonRoot (CreateContainerConfigError)"
                )
            if int(uid) == 0:
                raise AssertionError(
                    f"{c['name']}: runAsNonRoot but the container would run as root"
                )
        if user is not None or group is not None:
            u = str(user) if user is not None else image_user.split(":")[0] or "0"
            argv += ["--user", f"{u}:{group}" if group is not None else u]
        for gid in [pod.get("fsGroup"), *pod.get("supplementalGroups", [])]:
            if gid is not None:
                argv += ["--group-add", str(gid)]
        if ctx.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        caps = ctx.get("capabilities", {})
        for cap in caps.get("drop", []):
            argv += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            argv += ["--cap-add", cap]
        if ctx.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        if ctx.get("privileged"):
            raise PodSpecError(f"{c['name']}: privileged containers are not run here")
        seccomp = ctx.get("seccompProfile", {}).get("type", "RuntimeDefault")
        if seccomp != "RuntimeDefault":
            raise PodSpecError(f"{c['name']}: seccompProfile {seccomp} not supported")
        return argv

    def _volumes(self, c: dict[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        argv: list[str] = []
        for mount in c.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" not in volume:
                raise PodSpecError(f"{c['name']}: volume type of {volume} not supported")
            # The kubelet makes emptyDir directories 0777.
            spec = f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=0777"
            argv += ["--mount", spec + (",readonly" if mount.get("readOnly") else "")]
        return argv

    def _resources(self, c: dict[str, Any]) -> list[str]:
        res = c.get("resources", {})
        argv: list[str] = []
        memory = res.get("limits", {}).get("memory")
        if memory:
            argv += ["--memory", to_bytes(memory)]
        cpu = res.get("requests", {}).get("cpu")
        if cpu:
            millis = int(cpu[:-1]) if str(cpu).endswith("m") else int(float(cpu) * 1000)
            argv += ["--cpu-shares", str(max(2, millis * 1024 // 1000))]
        return argv

    def run_container(self, c: dict[str, Any]) -> str:
        name = self.container_name(c["name"])
        image = c["image"]
        image_user = docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
        argv = [
            "run",
            "-d",
            "--name",
            name,
            "--label",
            f"{LABEL}={self.run_id}",
            "--network",
            f"container:{self.pause_name}",
            "--ipc",
            f"container:{self.pause_name}",
            "--stop-timeout",
            str(self.spec.get("terminationGracePeriodSeconds", 30)),
        ]
        argv += self._security(c, image_user)
        argv += self._volumes(c)
        argv += self._resources(c)
        for key, value in self._env(c).items():
            argv += ["--env", f"{key}={value}"]
        if c.get("workingDir"):
            argv += ["--workdir", c["workingDir"]]
        command = list(c.get("command", []))
        args = list(c.get("args", []))
        if command:
            argv += ["--entrypoint", command[0], image, *command[1:], *args]
        else:
            argv += [image, *args]
        docker(*argv)
        self.started.append(name)
        return name

    def start(self) -> dict[str, float]:
        """Start the pod like the kubelet; returns the seconds each startup probe took."""
        self.start_sandbox()
        startup: dict[str, float] = {}
        for c in self.spec.get("initContainers", []):
            self.run_container(c)
            if is_native_sidecar(c):
                if "startupProbe" in c:
                    startup[c["name"]], _ = wait_probe(self, c, c["startupProbe"])
            else:
                code = docker("wait", self.container_name(c["name"]), timeout=300).stdout.strip()
                if code != "0":
                    raise AssertionError(f"init container {c['name']} exited {code}")
        for c in self.spec.get("containers", []):
            self.run_container(c)
        for c in self.spec.get("containers", []):
            if "startupProbe" in c:
                startup[c["name"]], _ = wait_probe(self, c, c["startupProbe"])
        return startup

    def state(self, name: str) -> dict[str, Any]:
        out = docker("inspect", "-f", "{{json .State}}", self.container_name(name)).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def exec(self, name: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.container_name(name), *argv, check=False, timeout=timeout)

    def logs(self) -> str:
        parts = []
        for name in self.started:
            proc = docker("logs", "--tail", "60", name, check=False, timeout=30)
            state = docker("inspect", "-f", "{{json .State}}", name, check=False).stdout.strip()
            parts.append(f"--- {name} {state}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)

    def remove(self) -> None:
        for name in reversed(self.started):
            docker("rm", "-f", "-v", name, check=False, timeout=60)
        self.started.clear()


def to_bytes(quantity: str) -> str:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if str(quantity).endswith(suffix):
            return str(int(float(str(quantity)[: -len(suffix)]) * factor))
    return str(int(float(quantity)))


def remove_run(run_id: str | None = None) -> None:
    """Remove the pod tier's containers: one run's, or every run's."""
    selector = f"label={LABEL}={run_id}" if run_id else f"label={LABEL}"
    ids = docker("ps", "-aq", "--filter", selector, check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False, timeout=120)


@contextlib.contextmanager
def connect(port: int, timeout: float = 10) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        yield conn
    finally:
        conn.close()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    with connect(port, timeout) as conn:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

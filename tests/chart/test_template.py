"""Assertions on the parsed output of `helm template`."""

from __future__ import annotations

import math

import pytest

from tests.chart.helm import (
    CHART,
    RELEASE,
    env_map,
    find,
    kinds,
    render,
    render_error,
    render_text,
    sidecar,
    workload_pod_spec,
)

FULLNAME = f"{RELEASE}-streamproxy"
RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def assert_restricted(security_context: dict[str, object]) -> None:
    for key, value in RESTRICTED.items():
        assert security_context.get(key) == value, (key, security_context)


# The sidecar, native and classic


def test_default_is_native_sidecar() -> None:
    spec = workload_pod_spec(render())
    init = spec["initContainers"]
    assert [c["name"] for c in init] == ["streamproxy"]
    assert init[0]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["app"]


def test_classic_sidecar_is_a_second_container() -> None:
    spec = workload_pod_spec(render(values={"proxy": {"nativeSidecar": False}}))
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["app", "streamproxy"]
    assert "restartPolicy" not in spec["containers"][1]


def test_native_and_classic_differ_only_in_restart_policy() -> None:
    native = dict(sidecar(render()))
    classic = sidecar(render(values={"proxy": {"nativeSidecar": False}}))
    assert native.pop("restartPolicy") == "Always"
    assert native == classic


def test_native_sidecar_refused_below_1_29() -> None:
    assert "native sidecars need Kubernetes >= 1.29" in render_error(kube_version="1.28.0")
    classic = render(values={"proxy": {"nativeSidecar": False}}, kube_version="1.25.0")
    assert sidecar(classic)["name"] == "streamproxy"


def test_sidecar_image_and_args() -> None:
    container = sidecar(render())
    assert container["image"] == "streamproxy:0.1.0"  # appVersion
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == ["run"]
    tagged = sidecar(render(values={"image": {"repository": "reg.example/sp", "tag": "9"}}))
    assert tagged["image"] == "reg.example/sp:9"


def test_sidecar_ports() -> None:
    container = sidecar(render())
    assert container["ports"] == [
        {"name": "proxy", "containerPort": 15000, "protocol": "TCP"},
        {"name": "proxy-admin", "containerPort": 15020, "protocol": "TCP"},
    ]
    moved = sidecar(render(values={"proxy": {"port": 16000, "adminPort": 16020}}))
    assert [p["containerPort"] for p in moved["ports"]] == [16000, 16020]
    assert env_map(moved)["STREAMPROXY_PORT"] == "16000"
    assert moved["readinessProbe"]["httpGet"]["port"] == 16020


def test_probes() -> None:
    container = sidecar(render())
    assert container["readinessProbe"]["httpGet"] == {"path": "/status", "port": 15020}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 15020}
    # A native sidecar must pass its startup probe before the app starts: it cannot wait
    # for the app, so it checks only that the process is up.
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": 15020}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_security_context_everywhere() -> None:
    docs = render(files=(CHART / "ci" / "all-features-values.yaml",))
    pods = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            pods.append(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "Pod":
            pods.append(doc["spec"])
    assert len(pods) == 3  # workload, in-chart Redis, helm test pod
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert_restricted(container["securityContext"])
    container = sidecar(docs)
    assert container["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["runAsGroup"] == 10001


# Environment wiring


def test_env_defaults() -> None:
    env = env_map(sidecar(render()))
    assert env["STREAMPROXY_UPSTREAM"] == "http://127.0.0.1:8080"
    assert env["STREAMPROXY_REDIS_URL"] == f"redis://{FULLNAME}-redis:6379/0"
    assert env["STREAMPROXY_DRAIN_SECONDS"] == "5"
    assert env["STREAMPROXY_SHUTDOWN_TIMEOUT"] == "30"
    assert env["STREAMPROXY_FLUSH_INTERVAL"] == "0.2"
    assert env["STREAMPROXY_LOG_LEVEL"] == "info"
    assert env["STREAMPROXY_ACCESS_LOG"] == "false"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Unset settings are left to the binary's defaults, not rendered as empty strings.
    for unset in (
        "STREAMPROXY_ADMIN_HOST",
        "STREAMPROXY_REDIS_PASSWORD",
        "STREAMPROXY_REDIS_USERNAME",
        "STREAMPROXY_REDIS_SENTINELS",
    ):
        assert unset not in env
    assert all(isinstance(v, (str, dict)) for v in env.values())


def test_env_external_redis_with_existing_secret() -> None:
    docs = render(files=(CHART / "ci" / "external-redis-values.yaml",))
    env = env_map(sidecar(docs))
    assert env["STREAMPROXY_REDIS_URL"] == "redis://redis.example.svc.cluster.local:6379/0"
    assert env["STREAMPROXY_REDIS_USERNAME"] == "streamproxy"
    assert env["STREAMPROXY_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "streamproxy-redis", "key": "password"}
    }
    assert not [d for d in docs if "redis" in d["metadata"]["name"]]


def test_env_every_proxy_value() -> None:
    values = {
        "app": {"port": 3000},
        "proxy": {
            "host": "::",
            "adminHost": "0.0.0.0",
            "connectTimeout": 2.5,
            "readTimeout": 300,
            "keepaliveTimeout": 30,
            "upstreamPoolSize": 64,
            "upstreamKeepalive": 2,
            "poolTimeout": 1.5,
            "sendTimeout": 20,
            "backlog": 8192,
            "healthInterval": 0.5,
            "counterKey": "k",
            "flushInterval": 1,
            "drainSeconds": 0,
            "shutdownTimeout": 10,
            "logLevel": "debug",
            "accessLog": True,
            "requestId": False,
            "requestIdResponse": True,
            "trustedProxies": "none",
            "maxInFlight": 250,
            "maxRequestBody": 10485760,
            "upstreamHealthPath": "/healthz",
        },
        "redis": {
            "url": "rediss://r:6380",
            "caFile": "/ca/ca.crt",
            "cluster": True,
            "sentinels": "s1:26379,s2:26379",
            "sentinelMaster": "mymaster",
            "sentinelAuth": True,
            "server": {"enabled": False},
        },
    }
    env = env_map(sidecar(render(values=values)))
    assert env == {
        "STREAMPROXY_UPSTREAM": "http://127.0.0.1:3000",
        "STREAMPROXY_HOST": "::",
        "STREAMPROXY_PORT": "15000",
        "STREAMPROXY_ADMIN_HOST": "0.0.0.0",
        "STREAMPROXY_ADMIN_PORT": "15020",
        "STREAMPROXY_CONNECT_TIMEOUT": "2.5",
        "STREAMPROXY_READ_TIMEOUT": "300",
        "STREAMPROXY_KEEPALIVE_TIMEOUT": "30",
        "STREAMPROXY_UPSTREAM_POOL_SIZE": "64",
        "STREAMPROXY_UPSTREAM_KEEPALIVE": "2",
        "STREAMPROXY_POOL_TIMEOUT": "1.5",
        "STREAMPROXY_SEND_TIMEOUT": "20",
        "STREAMPROXY_BACKLOG": "8192",
        "STREAMPROXY_HEALTH_INTERVAL": "0.5",
        "STREAMPROXY_REDIS_URL": "rediss://r:6380",
        "STREAMPROXY_REDIS_CA_FILE": "/ca/ca.crt",
        "STREAMPROXY_REDIS_SENTINELS": "s1:26379,s2:26379",
        "STREAMPROXY_REDIS_SENTINEL_MASTER": "mymaster",
        "STREAMPROXY_REDIS_SENTINEL_AUTH": "true",
        "STREAMPROXY_REDIS_CLUSTER": "true",
        "STREAMPROXY_COUNTER_KEY": "k",
        "STREAMPROXY_FLUSH_INTERVAL": "1",
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "STREAMPROXY_DRAIN_SECONDS": "0",
        "STREAMPROXY_SHUTDOWN_TIMEOUT": "10",
        "STREAMPROXY_LOG_LEVEL": "debug",
        "STREAMPROXY_ACCESS_LOG": "true",
        "STREAMPROXY_REQUEST_ID": "false",
        "STREAMPROXY_REQUEST_ID_RESPONSE": "true",
        "STREAMPROXY_TRUSTED_PROXIES": "none",
        "STREAMPROXY_MAX_IN_FLIGHT": "250",
        # A large integer stays an integer (Helm holds it as float64: 1.048576e+07).
        "STREAMPROXY_MAX_REQUEST_BODY": "10485760",
        "STREAMPROXY_UPSTREAM_HEALTH_PATH": "/healthz",
    }


def test_env_is_accepted_by_settings() -> None:
    """What the chart renders, the binary parses: feed the env into Settings."""
    from sidecar.settings import Settings

    env = env_map(sidecar(render(files=(CHART / "ci" / "all-features-values.yaml",))))
    kwargs = {
        name.removeprefix("STREAMPROXY_").lower(): value
        for name, value in env.items()
        if isinstance(value, str) and name.startswith("STREAMPROXY_")
    }
    settings = Settings(**kwargs)
    assert settings.upstream_port == 8080
    assert settings.access_log is True


def test_no_redis_means_in_process_counter() -> None:
    env = env_map(sidecar(render(values={"redis": {"server": {"enabled": False}}})))
    assert "STREAMPROXY_REDIS_URL" not in env


def test_redis_url_and_in_chart_server_conflict() -> None:
    error = render_error(values={"redis": {"url": "redis://elsewhere:6379"}})
    assert "redis.server.enabled=false" in error


# Service, app, grace period


def test_service_targets_only_the_sidecar() -> None:
    docs = render(files=(CHART / "ci" / "custom-app-values.yaml",))
    service = find(docs, "Service", FULLNAME)
    ports = service["spec"]["ports"]
    assert {p["targetPort"] for p in ports} == {15000, 15020}
    assert ports[0] == {"name": "http", "port": 8080, "targetPort": 15000, "protocol": "TCP"}
    app = next(c for c in workload_pod_spec(docs)["containers"] if c["name"] == "web")
    assert app["ports"][0]["containerPort"] == 3000
    assert 3000 not in {p["targetPort"] for p in ports}
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "streamproxy",
        "app.kubernetes.io/instance": RELEASE,
    }
    node = find(
        render(values={"service": {"type": "NodePort", "nodePort": 30080}}), "Service", FULLNAME
    )
    assert node["spec"]["ports"][0]["nodePort"] == 30080
    hidden = find(render(values={"service": {"exposeAdmin": False}}), "Service", FULLNAME)
    assert [p["targetPort"] for p in hidden["spec"]["ports"]] == [15000]


def test_demo_echo_app_from_own_image_on_loopback() -> None:
    spec = workload_pod_spec(render())
    app = spec["containers"][0]
    assert app["image"] == "streamproxy:0.1.0"
    assert app["args"] == ["echo-app", "--host", "127.0.0.1", "--port", "8080"]
    assert_restricted(app["securityContext"])
    # The kubelet's httpGet of the sidecar's /drain: nothing runs in the app's image.
    assert app["lifecycle"]["preStop"] == {"httpGet": {"path": "/drain?seconds=5", "port": 15020}}


@pytest.mark.parametrize("kube_version", ["1.29.0", "1.35.0"])
def test_pre_stop_hook_drains_the_sidecar_on_every_version(kube_version: str) -> None:
    """A native sidecar is stopped after the app: the app's preStop hook is what tells it the
    pod is ending while the app still serves. An httpGet works on every version and in
    distroless images (an `exec sleep` does not)."""
    values = {"app": {"preStopSleepSeconds": 7}, "proxy": {"adminPort": 16020}}
    spec = workload_pod_spec(render(values=values, kube_version=kube_version))
    hook = spec["containers"][0]["lifecycle"]["preStop"]
    assert hook == {"httpGet": {"path": "/drain?seconds=7", "port": 16020}}


def test_drain_token_goes_to_the_sidecar_and_the_hook() -> None:
    spec = workload_pod_spec(render(values={"proxy": {"drainToken": "t0ken"}}))
    hook = spec["containers"][0]["lifecycle"]["preStop"]["httpGet"]
    assert hook["httpHeaders"] == [{"name": "X-Streamproxy-Drain-Token", "value": "t0ken"}]
    sidecar = next(c for c in spec["initContainers"] if c["name"] == "streamproxy")
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["STREAMPROXY_DRAIN_TOKEN"] == "t0ken"


def test_no_pre_stop_hook_when_disabled() -> None:
    spec = workload_pod_spec(render(values={"app": {"preStopSleepSeconds": 0}}))
    assert "lifecycle" not in spec["containers"][0]


def test_custom_app() -> None:
    spec = workload_pod_spec(render(files=(CHART / "ci" / "custom-app-values.yaml",)))
    app = spec["containers"][0]
    assert app["name"] == "web"
    assert app["image"] == "ghcr.io/example/web:1.2.3"
    assert app["command"] == ["/app/server"]
    assert app["args"] == ["--listen", "127.0.0.1:3000"]
    assert app["env"] == [{"name": "GREETING", "value": "hello"}]
    assert app["readinessProbe"] == {"exec": {"command": ["/app/server", "--healthcheck"]}}
    assert (
        env_map(
            sidecar(
                [
                    {
                        "kind": "Deployment",
                        "metadata": {"name": FULLNAME},
                        "spec": {"template": {"spec": spec}},
                    }
                ]
            )
        )["STREAMPROXY_UPSTREAM"]
        == "http://127.0.0.1:3000"
    )


@pytest.mark.parametrize(
    ("sleep", "drain", "shutdown"), [(5, 5, 30), (0, 0, 0), (10, 12.5, 60), (0, 0.2, 0.3)]
)
def test_grace_period_covers_drain_and_shutdown(sleep: int, drain: float, shutdown: float) -> None:
    values = {
        "app": {"preStopSleepSeconds": sleep},
        "proxy": {"drainSeconds": drain, "shutdownTimeout": shutdown},
    }
    spec = workload_pod_spec(render(values=values))
    grace = spec["terminationGracePeriodSeconds"]
    assert isinstance(grace, int)
    assert grace >= sleep + drain + shutdown + 5
    assert grace == math.ceil(sleep + drain + shutdown + 5)


def test_grace_period_explicit() -> None:
    spec = workload_pod_spec(render(values={"terminationGracePeriodSeconds": 120}))
    assert spec["terminationGracePeriodSeconds"] == 120
    error = render_error(values={"terminationGracePeriodSeconds": 20})
    assert "terminationGracePeriodSeconds=20 is below" in error


# Labels, names, optional objects


def test_labels_and_selectors() -> None:
    docs = render(files=(CHART / "ci" / "all-features-values.yaml",))
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "streamproxy-0.1.0"
        assert "app.kubernetes.io/version" in labels
    deployment = find(docs, "Deployment", FULLNAME)
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "streamproxy",
        "app.kubernetes.io/instance": RELEASE,
    }


def test_fullname_truncated_to_63() -> None:
    docs = render(values={"fullnameOverride": "x" * 80})
    assert find(docs, "Service", "x" * 63)
    assert find(docs, "Deployment", "x" * 57 + "-redis")


def test_default_objects() -> None:
    assert sorted(kinds(render())) == [
        "Deployment",
        "Deployment",
        "Pod",
        "Service",
        "Service",
        "ServiceAccount",
    ]


def test_all_optional_features() -> None:
    docs = render(files=(CHART / "ci" / "all-features-values.yaml",))
    assert sorted(kinds(docs)) == sorted(
        [
            "ServiceAccount",
            "PersistentVolumeClaim",
            "Service",
            "Service",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "Pod",
        ]
    )
    assert "replicas" not in find(docs, "Deployment", FULLNAME)["spec"]  # the HPA owns it
    monitor = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME


def test_network_policy_keeps_admin_port_inside_namespace() -> None:
    docs = render(files=(CHART / "ci" / "all-features-values.yaml",))
    policy = find(docs, "NetworkPolicy", FULLNAME)
    proxy_rule, admin_rule = policy["spec"]["ingress"]
    assert proxy_rule == {"ports": [{"port": 15000, "protocol": "TCP"}]}
    assert admin_rule["ports"] == [{"port": 15020, "protocol": "TCP"}]
    assert admin_rule["from"][0] == {"podSelector": {}}  # same namespace only...
    assert admin_rule["from"][1]["namespaceSelector"]  # ...plus the listed peers
    redis = find(docs, "NetworkPolicy", f"{FULLNAME}-redis")
    assert redis["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "streamproxy",
        "app.kubernetes.io/instance": RELEASE,
    }


def test_in_chart_redis() -> None:
    docs = render()
    redis = find(docs, "Deployment", f"{FULLNAME}-redis")
    pod = redis["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "redis:7.4-alpine"
    assert "--requirepass" not in container["args"]
    assert pod["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert find(docs, "Service", f"{FULLNAME}-redis")["spec"]["ports"][0]["port"] == 6379

    docs = render(files=(CHART / "ci" / "all-features-values.yaml",))
    pod = find(docs, "Deployment", f"{FULLNAME}-redis")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-redis"
    container = pod["containers"][0]
    assert container["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "streamproxy-redis"
    assert find(docs, "PersistentVolumeClaim")["spec"]["resources"]["requests"] == {
        "storage": "2Gi"
    }
    image = render(
        values={"redis": {"server": {"image": {"repository": "valkey/valkey", "tag": "8"}}}}
    )
    redis = find(image, "Deployment", f"{FULLNAME}-redis")
    assert redis["spec"]["template"]["spec"]["containers"][0]["image"] == "valkey/valkey:8"


def test_helm_test_pod_uses_streamproxy_check() -> None:
    pod = find(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Not hook-succeeded: `helm test --logs` reads the pod after it succeeds (helm#9098).
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    # One container (the other checks run before it as init containers): `helm test --logs`
    # cannot read a pod of several containers without a name, and helm names none.
    [service] = pod["spec"]["initContainers"]
    [status] = pod["spec"]["containers"]
    for container in (service, status):
        assert container["image"] == "streamproxy:0.1.0"
        assert container["args"][0] == "check"
        # A Service can refuse for a moment after `helm install --wait`: the check asks again.
        assert container["args"][1:5] == ["--timeout", "10", "--retry-for", "30"]
    # The app's answer through the Service is any 2xx; /status must be JSON with the counter.
    assert service["args"][-1] == f"http://{FULLNAME}:80/"
    assert status["args"][-3:] == [f"http://{FULLNAME}:15020/status", "--expect-json", "counter"]
    hidden = find(render(values={"service": {"exposeAdmin": False}}), "Pod")
    assert [c["name"] for c in hidden["spec"]["containers"]] == ["check-service"]
    assert "initContainers" not in hidden["spec"]


def test_notes_have_port_forward_and_curl() -> None:
    proc_text = render_text()
    assert "NOTES" not in proc_text  # helm template leaves NOTES out; render them below
    from tests.chart.helm import run_helm

    notes = run_helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "streamproxy"
    ).stdout
    assert (
        f"kubectl --namespace streamproxy port-forward deployment/{FULLNAME} 15020:15020 &" in notes
    )
    assert "curl -s http://127.0.0.1:15020/status" in notes
    assert f"port-forward service/{FULLNAME} 8080:80 &" in notes

{{/*
The streamproxy sidecar container: the one definition the workload renders, in either mode.
`streamproxy inject` builds the same container (sidecar/k8s_sidecar.py) for the same settings;
tests/inject/test_parity.py renders both and asserts they are equal, so change them together.
Environment variables follow the order of the fields of sidecar.settings.Settings; unset
(null or empty) values are left out so the binary's own default applies.
*/}}
{{- define "streamproxy.sidecarEnv" -}}
{{- $proxy := .Values.proxy -}}
{{- $redis := .Values.redis -}}
{{- $password := "" -}}
{{- if $redis.existingSecret -}}
{{- $password = dict "secretKeyRef" (dict "name" $redis.existingSecret "key" $redis.existingSecretPasswordKey) -}}
{{- end -}}
{{- $vars := list
  (list "STREAMPROXY_UPSTREAM" (printf "http://127.0.0.1:%d" (int .Values.app.port)))
  (list "STREAMPROXY_HOST" $proxy.host)
  (list "STREAMPROXY_PORT" (int $proxy.port))
  (list "STREAMPROXY_ADMIN_HOST" $proxy.adminHost)
  (list "STREAMPROXY_ADMIN_PORT" (int $proxy.adminPort))
  (list "STREAMPROXY_CONNECT_TIMEOUT" $proxy.connectTimeout)
  (list "STREAMPROXY_READ_TIMEOUT" $proxy.readTimeout)
  (list "STREAMPROXY_KEEPALIVE_TIMEOUT" $proxy.keepaliveTimeout)
  (list "STREAMPROXY_UPSTREAM_POOL_SIZE" (int $proxy.upstreamPoolSize))
  (list "STREAMPROXY_UPSTREAM_KEEPALIVE" $proxy.upstreamKeepalive)
  (list "STREAMPROXY_UPSTREAM_CLIENT" $proxy.upstreamClient)
  (list "STREAMPROXY_HEALTH_INTERVAL" $proxy.healthInterval)
  (list "STREAMPROXY_REDIS_URL" (include "streamproxy.redisUrl" .))
  (list "STREAMPROXY_REDIS_USERNAME" $redis.username)
  (list "STREAMPROXY_REDIS_PASSWORD" $password)
  (list "STREAMPROXY_REDIS_CA_FILE" $redis.caFile)
  (list "STREAMPROXY_REDIS_SENTINELS" $redis.sentinels)
  (list "STREAMPROXY_REDIS_SENTINEL_MASTER" $redis.sentinelMaster)
  (list "STREAMPROXY_REDIS_CLUSTER" $redis.cluster)
  (list "STREAMPROXY_COUNTER_KEY" $proxy.counterKey)
  (list "STREAMPROXY_FLUSH_INTERVAL" $proxy.flushInterval)
  (list "POD_NAME" (dict "fieldRef" (dict "fieldPath" "metadata.name")))
  (list "STREAMPROXY_DRAIN_SECONDS" $proxy.drainSeconds)
  (list "STREAMPROXY_SHUTDOWN_TIMEOUT" $proxy.shutdownTimeout)
  (list "STREAMPROXY_LOG_LEVEL" $proxy.logLevel)
  (list "STREAMPROXY_ACCESS_LOG" $proxy.accessLog)
-}}
{{- $env := list -}}
{{- range $vars -}}
{{- $value := index . 1 -}}
{{- if kindIs "map" $value -}}
{{- $env = append $env (dict "name" (index . 0) "valueFrom" $value) -}}
{{- else if not (or (kindIs "invalid" $value) (eq (toString $value) "")) -}}
{{- $env = append $env (dict "name" (index . 0) "value" (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end }}

{{- define "streamproxy.sidecarContainer" -}}
{{- $proxy := .Values.proxy -}}
- name: streamproxy
  image: {{ include "streamproxy.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run"]
  {{- if $proxy.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  ports:
    - name: proxy
      containerPort: {{ $proxy.port }}
      protocol: TCP
    - name: proxy-admin
      containerPort: {{ $proxy.adminPort }}
      protocol: TCP
  env:
    {{- include "streamproxy.sidecarEnv" . | nindent 4 }}
  {{- /* Startup checks only that the process is up: a native sidecar must pass it before the
  app starts, so it cannot wait for the app the way readiness does. */}}
  startupProbe:
    httpGet:
      path: /livez
      port: {{ $proxy.adminPort }}
    periodSeconds: 1
    timeoutSeconds: 1
    failureThreshold: 30
  readinessProbe:
    httpGet:
      path: /status
      port: {{ $proxy.adminPort }}
    periodSeconds: 2
    timeoutSeconds: 2
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /livez
      port: {{ $proxy.adminPort }}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  {{- with $proxy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

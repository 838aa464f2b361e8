{{/*
The streamproxy sidecar container, in either mode: the one definition of its fixed parts and
variables is sidecar/k8s/sidecar.py (what `streamproxy inject` adds), written to
files/sidecar.yaml by `make manifests`; this template only fills in the values.
tests/inject/test_parity.py asserts that chart and injector give equal containers.
Unset (null or empty) values are left out, so the binary's own default applies.
*/}}
{{- define "streamproxy.sidecarDefinition" -}}
{{- .Files.Get "files/sidecar.yaml" -}}
{{- end }}

{{- define "streamproxy.sidecarEnv" -}}
{{- $definition := include "streamproxy.sidecarDefinition" . | fromYaml -}}
{{- $sources := dict
  "upstream" (printf "http://127.0.0.1:%d" (int .Values.app.port))
  "redisUrl" (include "streamproxy.redisUrl" .)
  "podName" (dict "fieldRef" (dict "fieldPath" "metadata.name"))
  "redisPasswordSecret" ""
-}}
{{- if .Values.redis.existingSecret -}}
{{- $_ := set $sources "redisPasswordSecret" (dict "secretKeyRef" (dict "name" .Values.redis.existingSecret "key" .Values.redis.existingSecretPasswordKey)) -}}
{{- end -}}
{{- $env := list -}}
{{- range $row := $definition.env -}}
{{- $value := "" -}}
{{- if hasKey $row "from" -}}
{{- $value = index $sources $row.from -}}
{{- else -}}
{{- $value = $.Values -}}
{{- range $part := splitList "." $row.value -}}
{{- $value = index $value $part -}}
{{- end -}}
{{- if and $row.int (not (kindIs "invalid" $value)) -}}
{{- $value = int $value -}}
{{- end -}}
{{- end -}}
{{- if kindIs "map" $value -}}
{{- $env = append $env (dict "name" $row.name "valueFrom" $value) -}}
{{- else if not (or (kindIs "invalid" $value) (eq (toString $value) "")) -}}
{{- $env = append $env (dict "name" $row.name "value" (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end }}

{{- define "streamproxy.sidecarContainer" -}}
{{- $definition := include "streamproxy.sidecarDefinition" . | fromYaml -}}
{{- $proxy := .Values.proxy -}}
{{- $numbers := dict "port" (int $proxy.port) "admin_port" (int $proxy.adminPort) -}}
- name: {{ $definition.name }}
  image: {{ include "streamproxy.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    {{- toYaml $definition.args | nindent 4 }}
  {{- if $proxy.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  ports:
    {{- range $definition.ports }}
    - name: {{ .name }}
      containerPort: {{ index $numbers .setting }}
      protocol: TCP
    {{- end }}
  env:
    {{- include "streamproxy.sidecarEnv" . | nindent 4 }}
  {{- range $probe, $spec := $definition.probes }}
  {{ $probe }}:
    httpGet:
      path: {{ $spec.path }}
      port: {{ $proxy.adminPort | int }}
    periodSeconds: {{ $spec.periodSeconds | int }}
    timeoutSeconds: {{ $spec.timeoutSeconds | int }}
    failureThreshold: {{ $spec.failureThreshold | int }}
  {{- end }}
  {{- with $proxy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $definition.securityContext | nindent 4 }}
  terminationMessagePolicy: {{ $definition.terminationMessagePolicy }}
{{- end }}

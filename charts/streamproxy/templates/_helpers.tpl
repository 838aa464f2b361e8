{{/*
Expand the name of the chart.
*/}}
{{- define "streamproxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "streamproxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "streamproxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "streamproxy.labels" -}}
helm.sh/chart: {{ include "streamproxy.chart" . }}
{{ include "streamproxy.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "streamproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{/*
Create the name of the service account to use
*/}}
{{- define "streamproxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamproxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The streamproxy image (sidecar, echo app, test pod).
*/}}
{{- define "streamproxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Name and selector labels of the in-chart Redis.
*/}}
{{- define "streamproxy.redisName" -}}
{{- printf "%s-redis" (include "streamproxy.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "streamproxy.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "streamproxy.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "streamproxy.redisLabels" -}}
helm.sh/chart: {{ include "streamproxy.chart" . }}
{{ include "streamproxy.redisSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.redis.server.image.tag | quote }}
app.kubernetes.io/component: redis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The Redis URL the sidecars use: the external one, the in-chart one, or none.
*/}}
{{- define "streamproxy.redisUrl" -}}
{{- if .Values.redis.url }}
{{- .Values.redis.url }}
{{- else if .Values.redis.server.enabled }}
{{- printf "redis://%s:6379/0" (include "streamproxy.redisName" .) }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: long enough for the app's preStop sleep, the proxy's drain and
its in-flight shutdown, plus a margin. An explicit smaller value is an error.
*/}}
{{- define "streamproxy.minGracePeriod" -}}
{{- $sleep := float64 .Values.app.preStopSleepSeconds }}
{{- $drain := float64 .Values.proxy.drainSeconds }}
{{- $shutdown := float64 .Values.proxy.shutdownTimeout }}
{{- addf $sleep $drain $shutdown 5 | ceil | int }}
{{- end }}

{{- define "streamproxy.gracePeriod" -}}
{{- $min := include "streamproxy.minGracePeriod" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $min }}
{{- else if lt (int .Values.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds=%v is below app.preStopSleepSeconds + proxy.drainSeconds + proxy.shutdownTimeout + 5 = %d" .Values.terminationGracePeriodSeconds $min) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express.
*/}}
{{- define "streamproxy.validate" -}}
{{- if and .Values.redis.url .Values.redis.server.enabled }}
{{- fail "redis.url is set: also set redis.server.enabled=false (the in-chart Redis would go unused)" }}
{{- end }}
{{- if and .Values.proxy.nativeSidecar (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "native sidecars need Kubernetes >= 1.29 (this is %s): set proxy.nativeSidecar=false" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if eq (int .Values.app.port) (int .Values.proxy.port) }}
{{- fail "app.port and proxy.port must differ" }}
{{- end }}
{{- if eq (int .Values.app.port) (int .Values.proxy.adminPort) }}
{{- fail "app.port and proxy.adminPort must differ" }}
{{- end }}
{{- if eq (int .Values.proxy.port) (int .Values.proxy.adminPort) }}
{{- fail "proxy.port and proxy.adminPort must differ" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.exposeAdmin) }}
{{- fail "serviceMonitor.enabled needs service.exposeAdmin=true (it scrapes the Service's admin port)" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}

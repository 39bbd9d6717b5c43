{{/* Names are capped at 63 characters: they become DNS labels and label values. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Component names leave room for the suffix, so two components never truncate to one name. */}}
{{- define "sluice.operator.fullname" -}}
{{- printf "%s-operator" (include "sluice.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "sluice.gateway.fullname" -}}
{{- printf "%s-gateway" (include "sluice.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sluice.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluice.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "sluice.operator.labels" -}}
{{ include "sluice.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluice.gateway.labels" -}}
{{ include "sluice.labels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "sluice.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "sluice.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "sluice.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest]: a digest pins the image whatever the tag says. */}}
{{- define "sluice.imageRef" -}}
{{- $repo := index . 0 -}}
{{- $tag := index . 1 -}}
{{- $digest := index . 2 -}}
{{- if $digest -}}
{{- printf "%s@%s" $repo $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- include "sluice.imageRef" (list .Values.image.repository (default .Chart.AppVersion .Values.image.tag) .Values.image.digest) -}}
{{- end -}}

{{- define "sluice.envoy.image" -}}
{{- $i := .Values.gateway.envoy.image -}}
{{- include "sluice.imageRef" (list $i.repository $i.tag $i.digest) -}}
{{- end -}}

{{/*
What Envoy and the extproc dial for ADS: the operator Service by its fully qualified name, which
resolves the same whatever resolver and search path the client uses.
*/}}
{{- define "sluice.operator.xdsHost" -}}
{{- printf "%s.%s.svc.%s" (include "sluice.operator.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted Pod Security Standard, container by container. */}}
{{- define "sluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* topologySpreadConstraints over zones and nodes for one component's pods. */}}
{{- define "sluice.topologySpread" -}}
{{- $spread := index . 0 -}}
{{- $selector := index . 1 -}}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: {{ $spread.maxSkew }}
  topologyKey: {{ $key }}
  whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
Checks that span several values, which a JSON schema cannot word clearly. Rendered by every
template that depends on them, so `helm template -s` of one file still fails.
*/}}
{{- define "sluice.validate" -}}
{{- $op := .Values.operator -}}
{{- $gw := .Values.gateway -}}
{{- if and (gt (int $op.replicas) 1) (not $op.leaderElection.enabled) -}}
{{- fail "operator.replicas > 1 needs operator.leaderElection.enabled=true: replicas without it would all write status" -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecret.name -}}
{{- fail "redis: set either redis.url or redis.existingSecret.name, not both" -}}
{{- end -}}
{{- if and $gw.autoscaling.enabled (gt (int $gw.autoscaling.minReplicas) (int $gw.autoscaling.maxReplicas)) -}}
{{- fail (printf "gateway.autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" (int $gw.autoscaling.minReplicas) (int $gw.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- $needed := add (int $gw.drain.drainSeconds) (int $gw.extproc.shutdownGraceSeconds) -}}
{{- if le (int $gw.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must exceed drain.drainSeconds + extproc.shutdownGraceSeconds (%d), or pods are killed mid-drain" (int $gw.terminationGracePeriodSeconds) (int $needed)) -}}
{{- end -}}
{{- $ports := list (int $gw.envoy.adminPort) (int $gw.envoy.readyPort) (int $gw.extproc.adminPort) 1975 -}}
{{- if ne (len ($ports | uniq)) 4 -}}
{{- fail "gateway ports envoy.adminPort, envoy.readyPort, extproc.adminPort and the listener port 1975 must all differ: they share one pod" -}}
{{- end -}}
{{- if eq (int $op.xdsPort) (int $op.adminPort) -}}
{{- fail "operator.xdsPort and operator.adminPort must differ" -}}
{{- end -}}
{{- end -}}

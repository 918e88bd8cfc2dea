{{/* Object names: the release name, with "sessiongate" appended unless it is already in it. */}}
{{- define "sessiongate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains "sessiongate" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-sessiongate" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The workload: in the sidecar shape the pod is the gateway, as in k8s/overlays/sidecar. */}}
{{- define "sessiongate.workload" -}}
{{- if eq .Values.shape "sidecar" -}}{{ include "sessiongate.fullname" . }}-gateway{{- else -}}{{ include "sessiongate.fullname" . }}{{- end -}}
{{- end -}}

{{- define "sessiongate.component" -}}
{{- if eq .Values.shape "sidecar" -}}gateway{{- else -}}ext-authz{{- end -}}
{{- end -}}

{{- define "sessiongate.selectorLabels" -}}
app.kubernetes.io/name: sessiongate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sessiongate.labels" -}}
{{ include "sessiongate.selectorLabels" . }}
app.kubernetes.io/part-of: sessiongate
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sessiongate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq $tag "latest" -}}{{ fail "image.tag: pin a release tag or set image.digest, never latest" }}{{- end -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "sessiongate.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "sessiongate.fullname" .) -}}
{{- end -}}

{{/*
The config file: .Values.config with the keys the chart owns filled in. A
chart-owned key set in values would be silently replaced, so it is refused.
*/}}
{{- define "sessiongate.config" -}}
{{- $v := .Values.config -}}
{{- $owned := dict "admin_addr" (eq $v.admin_addr "127.0.0.1:9003") "admin_token_file" (eq $v.admin_token_file "") "token.signing_keys" (empty $v.token.signing_keys) "redis.password_file" (eq $v.redis.password_file "") -}}
{{- range $k, $ok := $owned -}}
{{- if not $ok -}}{{ fail (printf "config.%s is set by the chart (see values.yaml: signingKeys, adminToken, redisSecrets); leave it at its default" $k) }}{{- end -}}
{{- end -}}
{{- if and (ne $v.grpc_addr ":9001") (eq $.Values.shape "sidecar") -}}{{ fail "config.grpc_addr is set by the chart in the sidecar shape (127.0.0.1:9001)" }}{{- end -}}
{{- $topologies := 0 -}}
{{- if or $v.redis.url .Values.redisSecrets.url.secretName }}{{ $topologies = add1 $topologies }}{{ end -}}
{{- if or $v.redis.sentinel.master_name $v.redis.sentinel.addrs }}{{ $topologies = add1 $topologies }}{{ end -}}
{{- if $v.redis.cluster_addrs }}{{ $topologies = add1 $topologies }}{{ end -}}
{{- if ne $topologies 1 -}}{{ fail "Redis: set exactly one of redisSecrets.url.secretName (or config.redis.url), config.redis.sentinel.*, config.redis.cluster_addrs; for Sentinel or Cluster set redisSecrets.url.secretName to \"\"" }}{{- end -}}
{{- if and $v.redis.url .Values.redisSecrets.url.secretName -}}{{ fail "config.redis.url and redisSecrets.url.secretName are both set; the Secret would win" }}{{- end -}}
{{- if and $v.redis.sentinel.password .Values.redisSecrets.sentinelPassword.secretName -}}{{ fail "config.redis.sentinel.password and redisSecrets.sentinelPassword.secretName are both set; the Secret would win" }}{{- end -}}
{{- if empty .Values.signingKeys.files -}}{{ fail "signingKeys.files: at least one key file" }}{{- end -}}
{{- $c := deepCopy $v -}}
{{- $_ := set $c "admin_addr" ":9003" -}}
{{- $_ := set $c "admin_token_file" (printf "/etc/sessiongate/admin/%s" .Values.adminToken.key) -}}
{{- $keys := list -}}
{{- range .Values.signingKeys.files -}}{{- $keys = append $keys (printf "/etc/sessiongate/keys/%s" .) -}}{{- end -}}
{{- $_ := set $c.token "signing_keys" $keys -}}
{{- if .Values.redisSecrets.password.secretName -}}
{{- $_ := set $c.redis "password_file" (printf "/etc/sessiongate/redis/%s" .Values.redisSecrets.password.key) -}}
{{- end -}}
{{ toYaml $c }}
{{- end -}}

{{/* Chart name, 63 characters at most (the DNS label limit of object names). */}}
{{- define "podbw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name, else release-chart. */}}
{{- define "podbw.fullname" -}}
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

{{- define "podbw.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "podbw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never change them after a release exists (DaemonSet selectors are immutable). */}}
{{- define "podbw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podbw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "podbw.labels" -}}
helm.sh/chart: {{ include "podbw.chart" . }}
{{ include "podbw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: podbw
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the Prometheus Operator objects: the `release` label kube-prometheus-stack selects on. */}}
{{- define "podbw.monitoringLabels" -}}
{{ include "podbw.labels" . }}
{{- with .Values.monitoring.release }}
release: {{ . | quote }}
{{- end }}
{{- with .Values.monitoring.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "podbw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "podbw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* global.imageRegistry (a parent chart's or a mirror's) before image.registry. */}}
{{- define "podbw.image" -}}
{{- $repository := .Values.image.repository }}
{{- with (default .Values.image.registry .Values.global.imageRegistry) }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* imagePullSecrets then global.imagePullSecrets, each `name: x` or a plain name; "" when there are none. */}}
{{- define "podbw.imagePullSecrets" -}}
{{- range concat .Values.imagePullSecrets .Values.global.imagePullSecrets }}
{{- if kindIs "map" . }}
- name: {{ .name | quote }}
{{- else }}
- name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Namespace of a ServiceMonitor, PodMonitor or PrometheusRule: its own setting, else the chart's. Takes (list root settings). */}}
{{- define "podbw.monitoringNamespace" -}}
{{- $root := index . 0 }}
{{- default (include "podbw.namespace" $root) (index . 1).namespace }}
{{- end }}

{{/* Where the TLS Secret is mounted in the agent container. */}}
{{- define "podbw.tlsDir" -}}/etc/podbw/tls{{- end }}

{{/* Where the web config Secret is mounted (a directory: Secret updates replace files, which the agent follows). */}}
{{- define "podbw.webConfigDir" -}}/etc/podbw/web{{- end }}

{{/* The web config the chart renders: web.config with web.tls's tls_server_config under it (the user's keys win). */}}
{{- define "podbw.webConfig" -}}
{{- $config := deepCopy .Values.web.config }}
{{- if .Values.web.tls.enabled }}
{{- $dir := include "podbw.tlsDir" . }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) }}
{{- if .Values.web.tls.clientAuth }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- $_ := set $tls "client_auth_type" "RequireAndVerifyClientCert" }}
{{- end }}
{{- $_ := set $config "tls_server_config" (merge (deepCopy (default dict $config.tls_server_config)) $tls) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* "true" when --web.config.file is passed: a rendered web config or an existing Secret. */}}
{{- define "podbw.webConfigEnabled" -}}
{{- if or .Values.web.existingSecret.name .Values.web.config .Values.web.tls.enabled }}true{{ end }}
{{- end }}

{{/* Name and key of the Secret holding the web config. */}}
{{- define "podbw.webConfigSecret" -}}
{{- default (printf "%s-web-config" (include "podbw.fullname" .)) .Values.web.existingSecret.name }}
{{- end }}
{{- define "podbw.webConfigKey" -}}
{{- if .Values.web.existingSecret.name }}{{ .Values.web.existingSecret.key }}{{ else }}web-config.yml{{ end }}
{{- end }}

{{/* Where the annotation overrides ConfigMap is mounted (a directory: ConfigMap updates replace files, which the agent watches for). */}}
{{- define "podbw.overridesDir" -}}/etc/podbw/annotations{{- end }}

{{- define "podbw.scheme" -}}
{{- if .Values.web.existingSecret.name }}
{{- if .Values.web.existingSecret.https }}https{{ else }}http{{ end }}
{{- else if or .Values.web.tls.enabled .Values.web.config.tls_server_config }}https{{ else }}http{{ end }}
{{- end }}

{{/*
"true" when the kubelet can probe /healthz and /readyz over HTTP: it has neither a client
certificate nor a password, and it cannot see what an existing Secret holds.
*/}}
{{- define "podbw.httpProbes" -}}
{{- $config := include "podbw.webConfig" . | fromYaml }}
{{- $clientAuth := (default dict $config.tls_server_config).client_auth_type | default "NoClientCert" }}
{{- if not (or .Values.web.existingSecret.name $config.basic_auth_users (has $clientAuth (list "RequireAnyClientCert" "RequireAndVerifyClientCert"))) }}true{{ end }}
{{- end }}

{{/* `podbw run` flags in the order of `podbw run --help`, then agent.extraArgs (a repeated flag wins). */}}
{{- define "podbw.args" -}}
{{- $agent := .Values.agent }}
{{- $args := list }}
{{- $args = append $args (printf "--cri-endpoint=unix://%s" $agent.criSocket) }}
{{- $args = append $args (printf "--netns-dir=%s" $agent.netnsDir) }}
{{- $args = append $args (printf "--cri-timeout=%v" $agent.criTimeoutSeconds) }}
{{- $args = append $args (printf "--resync-interval=%v" $agent.resyncIntervalSeconds) }}
{{- $args = append $args (printf "--kubernetes=%s" (ternary "on" "off" .Values.kubernetesApi.enabled)) }}
{{- $args = append $args (printf "--egress-mode=%s" $agent.egressMode) }}
{{- if $agent.takeOverForeign }}
{{- $args = append $args "--take-over-foreign" }}
{{- end }}
{{- if .Values.annotationsOverrides }}
{{- $args = append $args (printf "--annotations-file=%s/annotations.yaml" (include "podbw.overridesDir" .)) }}
{{- end }}
{{- $args = append $args (printf "--web.listen-address=:%v" .Values.web.port) }}
{{- if include "podbw.webConfigEnabled" . }}
{{- $args = append $args (printf "--web.config.file=%s/%s" (include "podbw.webConfigDir" .) (include "podbw.webConfigKey" .)) }}
{{- end }}
{{- $args = append $args (printf "--sample-interval=%v" $agent.sampleIntervalSeconds) }}
{{- $args = append $args (printf "--peak-window=%v" $agent.peakWindowSeconds) }}
{{- if $agent.cleanupOnExit }}
{{- $args = append $args "--cleanup-on-exit" }}
{{- end }}
{{- concat $args (default (list) $agent.extraArgs) | toYaml }}
{{- end }}

{{/*
A probe of the agent's HTTP endpoint. With client certificates or basic auth required, the
kubelet (which has neither) can only check that the port accepts connections.
*/}}
{{- define "podbw.probe" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $settings := index . 2 -}}
{{- if not (include "podbw.httpProbes" $root) -}}
tcpSocket:
  port: metrics
{{- else -}}
httpGet:
  path: {{ $path }}
  port: metrics
  scheme: {{ include "podbw.scheme" $root | upper }}
{{- end }}
{{ toYaml $settings }}
{{- end }}

{{/*
Relabelings of the ServiceMonitor and PodMonitor, then the user's: the rules and dashboards
select job="podbw" (unless jobLabel names the label that sets the job) and a `node` label
(every podbw series is about one node), whatever the release or Service is called.
*/}}
{{- define "podbw.relabelings" -}}
{{- $own := list }}
{{- if not .jobLabel }}
{{- $own = append $own (dict "targetLabel" "job" "replacement" "podbw" "action" "replace") }}
{{- end }}
{{- $own = append $own (dict "sourceLabels" (list "__meta_kubernetes_pod_node_name") "targetLabel" "node" "action" "replace") }}
{{- concat $own .relabelings | toYaml }}
{{- end }}

{{/* One scrape endpoint, shared by ServiceMonitor (endpoints) and PodMonitor (podMetricsEndpoints). */}}
{{- define "podbw.scrapeEndpoint" -}}
{{- $root := index . 0 }}
{{- $monitor := index . 1 -}}
- port: metrics
  path: /metrics
  scheme: {{ include "podbw.scheme" $root }}
  {{- with $monitor.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with $monitor.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  honorLabels: {{ $monitor.honorLabels }}
  {{- if and (eq (include "podbw.scheme" $root) "https") $monitor.tlsConfig }}
  tlsConfig:
    {{- toYaml $monitor.tlsConfig | nindent 4 }}
  {{- end }}
  {{- with $monitor.basicAuth }}
  basicAuth:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  relabelings:
    {{- include "podbw.relabelings" $monitor | nindent 4 }}
  {{- with $monitor.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Fails rendering on combinations the schema cannot express clearly. */}}
{{- define "podbw.validate" -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "enable serviceMonitor or podMonitor, not both: every agent would be scraped twice" }}
{{- end }}
{{- if .Values.web.tls.enabled }}
{{- $_ := required "web.tls.secretName is required when web.tls.enabled is true" .Values.web.tls.secretName }}
{{- end }}
{{- if and .Values.web.existingSecret.name (or .Values.web.config .Values.web.tls.enabled) }}
{{- fail "web.existingSecret.name replaces web.config and web.tls: set one or the other" }}
{{- end }}
{{- end }}

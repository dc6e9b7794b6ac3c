{{/*
Name helpers follow the conventions of `helm create`, so that release and object names read the way
they do in the other charts of a cluster.
*/}}
{{- define "meridian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meridian.fullname" -}}
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

{{- define "meridian.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The component a release runs: ingest in region mode, query in global mode. */}}
{{- define "meridian.component" -}}
{{- if eq .Values.mode "region" }}ingest{{ else }}query{{ end }}
{{- end }}

{{- define "meridian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meridian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "meridian.component" . }}
{{- end }}

{{- define "meridian.labels" -}}
helm.sh/chart: {{ include "meridian.chart" . }}
{{ include "meridian.selectorLabels" . }}
app.kubernetes.io/version: {{ include "meridian.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meridian
{{- if eq .Values.mode "region" }}
meridian.io/region: {{ .Values.ingest.region | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "meridian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meridian.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "meridian.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "meridian.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "meridian.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Service names: the HTTP Service and the headless gRPC (StoreAPI) Service. */}}
{{- define "meridian.httpServiceName" -}}
{{- include "meridian.fullname" . }}
{{- end }}

{{- define "meridian.grpcServiceName" -}}
{{- printf "%s-grpc" (include "meridian.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{/* HTTP scheme of the probes and the ServiceMonitor: https when the web config serves TLS. */}}
{{- define "meridian.httpScheme" -}}
{{- if .Values.web.tls }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Container security context, on every container the chart creates. */}}
{{- define "meridian.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Log flags shared by every meridian container. */}}
{{- define "meridian.logArgs" -}}
- --log.level={{ .Values.log.level }}
- --log.format={{ .Values.log.format }}
{{- end }}

{{/* Mount paths. */}}
{{- define "meridian.paths" -}}
{{- dict "grpcServerTLS" "/etc/meridian/tls/grpc-server" "grpcClientTLS" "/etc/meridian/tls/grpc-client" "web" "/etc/meridian/web" "webTLS" "/etc/meridian/tls/web" "slo" "/etc/meridian/slo" "rules" "/var/lib/meridian/rules" "extraRules" "/etc/meridian/rules" "ruler" "/var/lib/meridian/ruler" "tsdb" "/var/lib/meridian/tsdb" "sd" "/etc/meridian/sd" "grafana" "/etc/meridian/grafana" | toJson }}
{{- end }}

{{/* gRPC server TLS flags (ingest's StoreAPI, or the querier's own StoreAPI). */}}
{{- define "meridian.grpcServerTLSArgs" -}}
{{- $p := include "meridian.paths" . | fromJson }}
{{- with .Values.tls.grpcServer }}
{{- if .enabled }}
- --grpc-server-tls-cert={{ $p.grpcServerTLS }}/{{ .certKey }}
- --grpc-server-tls-key={{ $p.grpcServerTLS }}/{{ .keyKey }}
{{- if .clientAuth }}
- --grpc-server-tls-client-ca={{ $p.grpcServerTLS }}/{{ .caKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes and mounts shared by both modes: TLS Secrets, the web config and /tmp. */}}
{{- define "meridian.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.grpcServer.enabled }}
- name: grpc-server-tls
  secret:
    secretName: {{ required "tls.grpcServer.secretName is required when tls.grpcServer.enabled" .Values.tls.grpcServer.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.web.configSecret }}
- name: web-config
  secret:
    secretName: {{ .Values.web.configSecret }}
    defaultMode: 0440
{{- end }}
{{- if .Values.web.tlsSecret }}
- name: web-tls
  secret:
    secretName: {{ .Values.web.tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "meridian.commonVolumeMounts" -}}
{{- $p := include "meridian.paths" . | fromJson }}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.grpcServer.enabled }}
- name: grpc-server-tls
  mountPath: {{ $p.grpcServerTLS }}
  readOnly: true
{{- end }}
{{- if .Values.web.configSecret }}
- name: web-config
  mountPath: {{ $p.web }}
  readOnly: true
{{- end }}
{{- if .Values.web.tlsSecret }}
- name: web-tls
  mountPath: {{ $p.webTLS }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "meridian.webArgs" -}}
{{- $p := include "meridian.paths" . | fromJson }}
{{- if .Values.web.configSecret }}
- --http.config={{ $p.web }}/{{ .Values.web.configKey }}
{{- end }}
{{- end }}

{{/* Probes on /-/ready and /-/healthy unless replaced in values. */}}
{{- define "meridian.probes" -}}
{{- $scheme := include "meridian.httpScheme" . }}
{{- if .Values.probes.readiness.enabled }}
readinessProbe:
  httpGet:
    path: /-/ready
    port: http
    scheme: {{ $scheme }}
    {{- with .Values.probes.httpHeaders }}
    httpHeaders:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- toYaml (omit .Values.probes.readiness "enabled") | nindent 2 }}
{{- end }}
{{- if .Values.probes.liveness.enabled }}
livenessProbe:
  httpGet:
    path: /-/healthy
    port: http
    scheme: {{ $scheme }}
    {{- with .Values.probes.httpHeaders }}
    httpHeaders:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- toYaml (omit .Values.probes.liveness "enabled") | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every workload. */}}
{{- define "meridian.podCommon" -}}
serviceAccountName: {{ include "meridian.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Affinity: the user's, or a soft pod anti-affinity across nodes (the preset of the Bitnami charts). */}}
{{- define "meridian.affinity" -}}
{{- if .Values.affinity }}
affinity:
  {{- toYaml .Values.affinity | nindent 2 }}
{{- else if eq .Values.podAntiAffinityPreset "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "meridian.selectorLabels" . | nindent 14 }}
{{- else if eq .Values.podAntiAffinityPreset "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "meridian.selectorLabels" . | nindent 12 }}
{{- end }}
{{- if .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range .Values.topologySpreadConstraints }}
  - {{ toYaml (omit . "labelSelector") | nindent 4 | trim }}
    labelSelector:
      {{- if .labelSelector }}
      {{- toYaml .labelSelector | nindent 6 }}
      {{- else }}
      matchLabels:
        {{- include "meridian.selectorLabels" $ | nindent 8 }}
      {{- end }}
  {{- end }}
{{- end }}
{{- end }}

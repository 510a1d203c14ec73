{{/* Chart name, truncated to a DNS label. */}}
{{- define "hami-control.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: <release>-<chart>, or the release when it has the chart name. */}}
{{- define "hami-control.fullname" -}}
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

{{- define "hami-control.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hami-control.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hami
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "hami-control.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hami-control.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hami-control.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "hami-control.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hami-control.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Objects in etcd (several replicas possible) or in the embedded store. */}}
{{- define "hami-control.etcd" -}}
{{- if .Values.etcd.endpoints }}true{{ end }}
{{- end }}

{{/* The embedded store on a PersistentVolumeClaim. */}}
{{- define "hami-control.pvc" -}}
{{- if and .Values.persistence.enabled (not .Values.etcd.endpoints) }}true{{ end }}
{{- end }}

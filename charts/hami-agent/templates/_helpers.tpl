{{/* Chart name, truncated to a DNS label. */}}
{{- define "hami-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: <release>-<chart>, or the release when it has the chart name. */}}
{{- define "hami-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The member cluster's name on the control plane. */}}
{{- define "hami-agent.clusterName" -}}
{{- $n := default .Release.Name .Values.clusterName }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,52}[a-z0-9])?$" $n) }}
{{- fail (printf "clusterName %q must be a DNS label of at most 54 characters" $n) }}
{{- end }}
{{- $n }}
{{- end }}

{{- define "hami-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hami-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hami
hami.io/cluster: {{ include "hami-agent.clusterName" . }}
{{- end }}

{{- define "hami-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hami-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hami-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "hami-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hami-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with the control plane's kubeconfig. */}}
{{- define "hami-agent.controlSecret" -}}
{{- default (printf "%s-control" (include "hami-agent.fullname" .)) .Values.controlPlane.existingSecret }}
{{- end }}

{{/* host:port the scheduler dials for this cluster's estimator. */}}
{{- define "hami-agent.estimatorAdvertise" -}}
{{- default (printf "%s-estimator.%s.svc:%d" (include "hami-agent.fullname" .) .Release.Namespace (int .Values.estimator.port)) .Values.estimator.advertise }}
{{- end }}

{{/* The Secret with the bootstrap token (join mode). */}}
{{- define "hami-agent.joinSecret" -}}
{{- default (printf "%s-join" (include "hami-agent.fullname" .)) .Values.join.existingSecret }}
{{- end }}

{{/* The CA hashes of join mode, as a list; fails when missing. */}}
{{- define "hami-agent.caCertHashes" -}}
{{- $h := .Values.join.caCertHash }}
{{- if kindIs "string" $h }}{{ $h = list $h | compact }}{{ end }}
{{- if not $h }}
{{- fail "join.caCertHash is required with join.url (sha256:HEX, printed by `hami token create`)" }}
{{- end }}
{{- toJson $h }}
{{- end }}

{{- define "ktls-node.name" -}}
{{- printf "%s-ktls-node" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ktls-node.selectorLabels" -}}
app.kubernetes.io/name: ktls-node
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ktls-node.labels" -}}
{{ include "ktls-node.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-setup
app.kubernetes.io/part-of: ktls-sidecar
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

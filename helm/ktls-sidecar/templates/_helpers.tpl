{{/* Names and the SPIFFE ID. */}}
{{- define "ktls-sidecar.workloadName" -}}
{{- default .Release.Name .Values.workload.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ktls-sidecar.serviceAccountName" -}}
{{- default (include "ktls-sidecar.workloadName" .) .Values.workload.serviceAccount.name -}}
{{- end -}}

{{- define "ktls-sidecar.spiffeId" -}}
{{- $td := required "trustDomain is required (e.g. --set trustDomain=example.org)" .Values.trustDomain -}}
{{- if not (regexMatch "^[a-z0-9._-]+$" $td) -}}
{{- fail (printf "trustDomain %q: only lowercase letters, digits, '.', '-' and '_' (SPIFFE-ID.md 2.1)" $td) -}}
{{- end -}}
spiffe://{{ $td }}/ns/{{ .Release.Namespace }}/sa/{{ include "ktls-sidecar.serviceAccountName" . }}
{{- end -}}

{{/*
The control socket. The emptyDir (ktls-run) is world-writable (0777), and
the sidecar refuses a control directory that others can write: whoever can
could swap in an impostor socket. So the socket lives in a subdirectory the
sidecar makes (0700, its uid); the agent and the probe run as that uid.
*/}}
{{/*
Labels: the selector pair (name, instance) and the full recommended set
(https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
The selector keeps name = the workload's name, as before, so that an upgrade
does not change a Deployment's (immutable) selector.
*/}}
{{- define "ktls-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ktls-sidecar.workloadName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ktls-sidecar.labels" -}}
{{ include "ktls-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: workload
app.kubernetes.io/part-of: ktls-sidecar
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The three file names of an --identity-layout (README: Identity files that rotate). */}}
{{- define "ktls-sidecar.layoutFiles" -}}
{{- get (dict "csi-driver-spiffe" "tls.crt, tls.key, ca.crt" "spiffe-helper" "svid.pem, svid_key.pem, svid_bundle.pem" "files" "cert.pem, key.pem, ca.pem") . -}}
{{- end -}}

{{/* The agent runs with identity.source=dev alone (and agent.enabled). */}}
{{- define "ktls-sidecar.agentEnabled" -}}
{{- if and .Values.agent.enabled (eq .Values.identity.source "dev") -}}true{{- end -}}
{{- end -}}

{{/*
The pod template's annotations for ktlsctl inject (README, "Injection"):
the sidecar's mTLS port in front of the app's port, the outbound routes and
the inbound allow list. Everything else the injector takes from the
InjectorConfig (templates/injectorconfig.yaml). Each value is one string,
written with toJson.
*/}}
{{- define "ktls-sidecar.podAnnotations" -}}
{{- $sc := .Values.sidecar -}}
ktls-sidecar.io/inbound: {{ printf "%v=%v" $sc.inboundPort .Values.workload.port | toJson }}
{{- $routes := list -}}
{{- range $sc.outbound -}}
{{- $r := printf "%v=%s" (required "sidecar.outbound[].localPort is required" .localPort) (required "sidecar.outbound[].remote is required" .remote) -}}
{{- if .id }}{{ $r = printf "%s,id=%s" $r .id }}{{ end -}}
{{- $routes = append $routes $r -}}
{{- end -}}
{{- with $routes }}
ktls-sidecar.io/outbound: {{ join " " . | toJson }}
{{- end }}
{{- with $sc.allow }}
ktls-sidecar.io/allow: {{ join "," . | toJson }}
{{- end }}
{{- end -}}

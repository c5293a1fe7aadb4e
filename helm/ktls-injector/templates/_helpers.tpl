{{/* Names. The webhook is cluster-scoped: its name carries the release's. */}}
{{- define "ktls-injector.fullname" -}}
{{- if contains "ktls-injector" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-ktls-injector" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ktls-injector.tlsSecret" -}}
{{- default (printf "%s-tls" (include "ktls-injector.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* The one image, as helm/ktls-sidecar names it. */}}
{{- define "ktls-injector.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "ktls-injector.image" -}}
{{ .Values.image.repository }}:{{ include "ktls-injector.imageTag" . }}
{{- end -}}

{{/* The Service's DNS names; the API server calls <name>.<namespace>.svc. */}}
{{- define "ktls-injector.dnsNames" -}}
{{- $n := include "ktls-injector.fullname" . -}}
- {{ $n }}
- {{ $n }}.{{ .Release.Namespace }}
- {{ $n }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/*
Labels: the selector pair (name, instance) and the full recommended set
(https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/),
as helm/ktls-sidecar's.
*/}}
{{- define "ktls-injector.selectorLabels" -}}
app.kubernetes.io/name: ktls-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ktls-injector.labels" -}}
{{ include "ktls-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: injector
app.kubernetes.io/part-of: ktls-sidecar
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
The render-time checks the schema cannot express. Included by the
webhook's template, so that a failed check renders nothing at all.
*/}}
{{- define "ktls-injector.validate" -}}
{{- $td := required "trustDomain is required (e.g. --set trustDomain=example.org): the injected pods' SPIFFE IDs are spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>" .Values.trustDomain -}}
{{- $ca := .Values.webhook.caBundle -}}
{{- $cm := .Values.certManager -}}
{{- if and $ca $cm.enabled -}}
{{- fail "webhook.caBundle and certManager.enabled are both set: the webhook's CA comes from one of them (certManager: cert-manager's cainjector fills it); unset the other" -}}
{{- end -}}
{{- if not (or $ca $cm.enabled) -}}
{{- fail "the webhook needs the CA of its serving certificate: set webhook.caBundle (base64 of the PEM CA that signed Secret tls.secretName: base64 -w0 ca.crt) or certManager.enabled=true (cert-manager makes the certificate and injects its CA); see helm/ktls-injector/README.md" -}}
{{- end -}}
{{- if $ca -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $ca)) -}}
{{- fail "webhook.caBundle is not base64 of PEM certificates (want the output of base64 -w0 ca.crt, whose text starts with -----BEGIN CERTIFICATE-----)" -}}
{{- end -}}
{{- end -}}
{{- if and $cm.enabled (not $cm.createIssuer) (not $cm.issuerRef.name) -}}
{{- fail "certManager.createIssuer=false needs certManager.issuerRef.name: the Issuer or ClusterIssuer that signs the webhook's certificate" -}}
{{- end -}}
{{- if and (lt (int .Values.injector.replicas) 2) (eq .Values.webhook.failurePolicy "Fail") -}}
{{- fail (printf "injector.replicas %v with webhook.failurePolicy Fail: while its one pod restarts or is evicted, no pod is admitted in an injected namespace; keep at least 2 (or failurePolicy Ignore, knowing what it means: README, Failure policy)" .Values.injector.replicas) -}}
{{- end -}}
{{- $id := .Values.identity -}}
{{- if and (eq $id.source "files") (not $id.files.secretName) -}}
{{- fail "identity.source=files needs identity.files.secretName: the Secret, in each injected pod's namespace, that holds its identity" -}}
{{- end -}}
{{- end -}}

{{/*
The InjectorConfig document (the design's schema; the injector refuses
unknown keys): the values of the same names, the image's tag made explicit
so that the injector injects the image it runs.
*/}}
{{- define "ktls-injector.config" -}}
{{- $img := dict "repository" .Values.image.repository "tag" (include "ktls-injector.imageTag" .) "pullPolicy" .Values.image.pullPolicy -}}
{{- $doc := dict "apiVersion" "ktls-sidecar.io/v1alpha1" "kind" "InjectorConfig" "trustDomain" .Values.trustDomain "mode" .Values.mode "image" $img "identity" .Values.identity "agent" .Values.agent "sidecar" .Values.sidecar "redirect" .Values.redirect -}}
{{- toYaml $doc -}}
{{- end -}}

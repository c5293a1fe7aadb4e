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
{{- define "ktls-sidecar.controlSocket" -}}
/run/ktls-sidecar/api/control.sock
{{- end -}}

{{- define "ktls-sidecar.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "ktls-sidecar.labels" -}}
app.kubernetes.io/name: {{ include "ktls-sidecar.workloadName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/*
The injected containers: the sidecar and, unless agent.enabled=false, the
agent. Include them in any pod spec's containers list:
  containers:
    - name: app
      ...
    {{- include "ktls-sidecar.containers" . | nindent 4 }}
and the volumes with "ktls-sidecar.volumes". The pod's securityContext needs
fsGroup: <sidecar.uid>, so that the agent can read the CA Secret (the dev
CA's signer set: ktlsctl ca export-signer).
*/}}
{{- define "ktls-sidecar.containers" -}}
{{- $id := include "ktls-sidecar.spiffeId" . -}}
{{- $sc := .Values.sidecar -}}
- name: ktls-sidecar
  image: {{ include "ktls-sidecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/usr/bin/ktls-sidecar"]
  args:
    - --inbound=0.0.0.0:{{ $sc.inboundPort }}=127.0.0.1:{{ .Values.workload.port }}
    {{- range $sc.outbound }}
    - --outbound=127.0.0.1:{{ required "sidecar.outbound[].localPort is required" .localPort }}={{ required "sidecar.outbound[].remote is required" .remote }}{{ with .id }},id={{ . }}{{ end }}
    {{- end }}
    {{- range $sc.allow }}
    - --allow={{ . }}
    {{- end }}
    - --inbound-mode={{ $sc.inboundMode }}
    - --spiffe-id={{ $id }}
    - --control-socket={{ include "ktls-sidecar.controlSocket" . }}
    - --ktls={{ $sc.ktls }}
    - --io={{ $sc.io }}
    {{- if $sc.workers }}
    - --workers={{ $sc.workers }}
    {{- end }}
    - --drain-timeout={{ $sc.drainTimeout }}
    - --admin=0.0.0.0:{{ $sc.adminPort }}
    - --log-level={{ $sc.logLevel }}
    {{- range $sc.extraArgs }}
    - {{ . }}
    {{- end }}
  ports:
    - name: mtls
      containerPort: {{ $sc.inboundPort }}
      protocol: TCP
    - name: ktls-admin
      containerPort: {{ $sc.adminPort }}
      protocol: TCP
  {{- /*
  The admin endpoint (--admin): /ready is 503 until the identity arrives,
  and at once when a drain starts; /live is 503 when a worker's loop
  stalls. The kubelet probes from the node, so it listens on 0.0.0.0;
  /drain and /quitquitquit answer loopback peers only.
  */}}
  readinessProbe:
    httpGet:
      path: /ready
      port: ktls-admin
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /live
      port: ktls-admin
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  securityContext:
    runAsUser: {{ $sc.uid }}
    runAsGroup: {{ $sc.uid }}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    {{- toYaml $sc.resources | nindent 4 }}
  volumeMounts:
    - name: ktls-run
      mountPath: /run/ktls-sidecar
{{- if .Values.agent.enabled }}
- name: ktls-agent
  image: {{ include "ktls-sidecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/usr/bin/ktlsctl"]
  args:
    - agent
    - --sidecar={{ include "ktls-sidecar.controlSocket" . }}
    - --ca=/etc/ktls-ca
    - --id={{ $id }}
    - --ttl={{ .Values.agent.ttl }}
  securityContext:
    runAsUser: {{ $sc.uid }}
    runAsGroup: {{ $sc.uid }}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
  volumeMounts:
    - name: ktls-run
      mountPath: /run/ktls-sidecar
    - name: ktls-ca
      mountPath: /etc/ktls-ca
      readOnly: true
{{- end }}
{{- end -}}

{{- define "ktls-sidecar.volumes" -}}
- name: ktls-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- if .Values.agent.enabled }}
{{- /*
The signer set's keys alone, by name: a Secret made from a whole CA
directory (the instructions before the root/signer split) also holds
root.key and root.pem, and those stay out of the pod. A missing key fails
the pod's start, which is right: the agent cannot sign without it.
*/}}
- name: ktls-ca
  secret:
    secretName: {{ .Values.agent.caSecret }}
    defaultMode: 0440
    items:
      {{- range list "intermediate.pem" "intermediate.key" "bundle.pem" "trust_domain" }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end -}}

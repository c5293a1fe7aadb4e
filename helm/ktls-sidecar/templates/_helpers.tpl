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

{{- define "ktls-sidecar.redirectManifest" -}}
/run/ktls-sidecar/redirect.conf
{{- end -}}

{{- define "ktls-sidecar.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

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

{{/*
A duration as the sidecar reads it (sidecar/common/parse.c,
ks_parse_duration_ms: digits, an optional fraction, then ms, s, m, h or
nothing for seconds), in milliseconds. The schema checks the form.
*/}}
{{- define "ktls-sidecar.durationMs" -}}
{{- $num := regexReplaceAll "^([0-9]+(\\.[0-9]+)?).*$" . "${1}" | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" . "" -}}
{{- $scale := get (dict "" 1000 "s" 1000 "ms" 1 "m" 60000 "h" 3600000) $unit -}}
{{- if not $scale -}}
{{- fail (printf "duration %q: expected digits and ms, s, m or h (e.g. 20s)" .) -}}
{{- end -}}
{{- mulf $num $scale | int64 -}}
{{- end -}}

{{/*
The sidecar's --drain-delay: sidecar.drainDelay, or by default 0s where no
endpoint has to learn that the pod is going (a native sidecar is stopped
after the app; a Job has no Service), 5s (the binary's default) otherwise.
*/}}
{{- define "ktls-sidecar.drainDelay" -}}
{{- if .Values.sidecar.drainDelay -}}
{{- .Values.sidecar.drainDelay -}}
{{- else if or (eq .Values.sidecar.mode "native") (eq .Values.workload.kind "Job") -}}
0s
{{- else -}}
5s
{{- end -}}
{{- end -}}

{{/* The render-time checks that the schema cannot express. */}}
{{- define "ktls-sidecar.validate" -}}
{{- $drain := include "ktls-sidecar.durationMs" .Values.sidecar.drainTimeout | int64 -}}
{{- $grace := mul .Values.terminationGracePeriodSeconds 1000 -}}
{{- if gt $drain $grace -}}
{{- fail (printf "sidecar.drainTimeout %s is longer than terminationGracePeriodSeconds (%ds): the kubelet would kill the sidecar in the middle of its drain; lower the one or raise the other" .Values.sidecar.drainTimeout (int .Values.terminationGracePeriodSeconds)) -}}
{{- end -}}
{{- $delay := include "ktls-sidecar.durationMs" (include "ktls-sidecar.drainDelay" .) | int64 -}}
{{- if gt $delay $drain -}}
{{- fail (printf "sidecar.drainDelay %s is longer than sidecar.drainTimeout %s: the delay counts inside the timeout (the sidecar refuses it too)" (include "ktls-sidecar.drainDelay" .) .Values.sidecar.drainTimeout) -}}
{{- end -}}
{{- $sc := .Values.sidecar -}}
{{- $ports := dict "sidecar.inboundPort" $sc.inboundPort "sidecar.adminPort" $sc.adminPort "workload.port" .Values.workload.port -}}
{{- if .Values.redirect.enabled -}}
{{- $_ := set $ports "redirect.inboundPort" .Values.redirect.inboundPort -}}
{{- $_ := set $ports "redirect.outboundPort" .Values.redirect.outboundPort -}}
{{- end -}}
{{- range $sc.outbound -}}
{{- $_ := set $ports (printf "sidecar.outbound[].localPort %v" .localPort) .localPort -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $k := keys $ports | sortAlpha -}}
{{- $p := toString (get $ports $k) -}}
{{- if hasKey $seen $p -}}
{{- fail (printf "%s and %s are both port %s: each listener needs its own" (get $seen $p) $k $p) -}}
{{- end -}}
{{- $_ := set $seen $p $k -}}
{{- end -}}
{{- if .Values.redirect.enabled -}}
{{- $app := .Values.workload.securityContext.runAsUser -}}
{{- if and (not (kindIs "invalid" $app)) (eq (int $app) (int $sc.uid)) -}}
{{- fail (printf "workload.securityContext.runAsUser %v is sidecar.uid: with the redirect the app's connections would be exempt and leave in plaintext; run the app under another uid" $app) -}}
{{- end -}}
{{- range $name := list "readinessProbe" "livenessProbe" "startupProbe" -}}
{{- $probe := get $.Values.workload $name -}}
{{- range $kind := list "httpGet" "tcpSocket" "grpc" -}}
{{- with get $probe $kind -}}
{{- $port := toString .port -}}
{{- if or (eq $port (toString $.Values.workload.port)) (eq $port "app") -}}
{{- fail (printf "workload.%s.%s.port %s is workload.port, which the redirect steers to the sidecar (it refuses the kubelet's plaintext): give the app's probes a port of their own, or an exec probe" $name $kind $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "ktls-sidecar.validateIdentity" . -}}
{{- end -}}

{{/*
identity.source's checks. The sidecar takes its identity from one place:
an identity flag in sidecar.extraArgs next to a source would be a second
(the sidecar refuses --identity-dir with --cert at start; two sources that
it did take would replace each other's identity), so it is refused here,
naming the value to set instead. A mount path under the control socket's
emptyDir would hide one volume behind the other.
*/}}
{{- define "ktls-sidecar.validateIdentity" -}}
{{- $id := .Values.identity -}}
{{- if and (eq $id.source "files") (not $id.files.secretName) -}}
{{- fail (printf "identity.source=files needs identity.files.secretName: the Secret holding %s (its keys for identity.files.layout=%s)" (include "ktls-sidecar.layoutFiles" $id.files.layout) $id.files.layout) -}}
{{- end -}}
{{- if ne $id.source "dev" -}}
{{- range .Values.sidecar.extraArgs -}}
{{- if regexMatch "^--?(cert|key|ca|identity-dir|identity-layout|workload-api)(=|$)" (toString .) -}}
{{- fail (printf "sidecar.extraArgs %q: identity.source=%s already says where the identity comes from; set identity.* instead (or identity.source=dev with agent.enabled=false to give the identity yourself)" (toString .) $id.source) -}}
{{- end -}}
{{- end -}}
{{- $mnt := include "ktls-sidecar.identityMountPath" . -}}
{{- if or (eq $mnt "/run/ktls-sidecar") (hasPrefix "/run/ktls-sidecar/" $mnt) (hasPrefix (printf "%s/" $mnt) "/run/ktls-sidecar/") -}}
{{- fail (printf "the identity volume's mountPath %s overlaps the control socket's /run/ktls-sidecar: choose another" $mnt) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The three file names of an --identity-layout (README: Identity files that rotate). */}}
{{- define "ktls-sidecar.layoutFiles" -}}
{{- get (dict "csi-driver-spiffe" "tls.crt, tls.key, ca.crt" "spiffe-helper" "svid.pem, svid_key.pem, svid_bundle.pem" "files" "cert.pem, key.pem, ca.pem") . -}}
{{- end -}}

{{/* Where the identity volume is mounted in the sidecar ("" for dev). */}}
{{- define "ktls-sidecar.identityMountPath" -}}
{{- $id := .Values.identity -}}
{{- if eq $id.source "csi-driver-spiffe" -}}
{{- $id.csiDriverSpiffe.mountPath -}}
{{- else if eq $id.source "spire" -}}
{{- $id.spire.mountPath -}}
{{- else if eq $id.source "files" -}}
{{- $id.files.mountPath -}}
{{- end -}}
{{- end -}}

{{/* The agent runs with identity.source=dev alone (and agent.enabled). */}}
{{- define "ktls-sidecar.agentEnabled" -}}
{{- if and .Values.agent.enabled (eq .Values.identity.source "dev") -}}true{{- end -}}
{{- end -}}

{{- define "ktls-sidecar.restricted" -}}
runAsUser: {{ .Values.sidecar.uid }}
runAsGroup: {{ .Values.sidecar.uid }}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The injected containers. Native mode (sidecar.mode=native) puts them all in
the pod's initContainers: "ktls-sidecar.initContainers" renders the
redirect's installer (if redirect.enabled), the agent and the sidecar, and
"ktls-sidecar.containers" renders nothing. Classic mode: initContainers
holds only the redirect's installer, and "ktls-sidecar.containers" the
agent and the sidecar, to be listed AHEAD of the app (the kubelet starts
containers in order and waits for each one's postStart hook). Use both in
any pod spec:
  initContainers:
    {{- include "ktls-sidecar.initContainers" . | nindent 4 }}
  containers:
    {{- include "ktls-sidecar.containers" . | nindent 4 }}
    - name: app
      ...
  volumes:
    {{- include "ktls-sidecar.volumes" . | nindent 4 }}
The pod's securityContext needs fsGroup: <sidecar.uid>, so that the agent
can read the CA Secret (the dev CA's signer set: ktlsctl ca export-signer).

The agent comes first in both modes: the sidecar is not ready until the
agent has delivered its identity, and the kubelet starts the container after
a native sidecar only once its startupProbe passes (after a classic one,
once its postStart hook returns); the agent waits for the sidecar's socket
with backoff.
*/}}
{{- define "ktls-sidecar.initContainers" -}}
{{- include "ktls-sidecar.validate" . -}}
{{- $out := list -}}
{{- if .Values.redirect.enabled -}}
{{- $out = append $out (include "ktls-sidecar.redirectContainer" . | trim) -}}
{{- end -}}
{{- if eq .Values.sidecar.mode "native" -}}
{{- $out = append $out (include "ktls-sidecar.proxyContainers" . | trim) -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{- define "ktls-sidecar.containers" -}}
{{- include "ktls-sidecar.validate" . -}}
{{- if eq .Values.sidecar.mode "classic" -}}
{{- include "ktls-sidecar.proxyContainers" . | trim -}}
{{- end -}}
{{- end -}}

{{/*
Every argument is one YAML string, written with toJson: a value holding
'#', ': ' or spaces reaches the program as it was given (unquoted, YAML
would read " #x" as a comment and "a: b" as a map).
*/}}
{{- define "ktls-sidecar.proxyContainers" -}}
{{- $id := include "ktls-sidecar.spiffeId" . -}}
{{- $sc := .Values.sidecar -}}
{{- $rd := .Values.redirect -}}
{{- $native := eq $sc.mode "native" -}}
{{- $sock := include "ktls-sidecar.controlSocket" . -}}
{{- if include "ktls-sidecar.agentEnabled" . }}
- name: ktls-agent
  image: {{ include "ktls-sidecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if $native }}
  restartPolicy: Always
  {{- end }}
  command: ["/usr/bin/ktlsctl"]
  args:
    - agent
    - {{ printf "--sidecar=%s" $sock | toJson }}
    - --ca=/etc/ktls-ca
    - {{ printf "--id=%s" $id | toJson }}
    - {{ printf "--ttl=%s" .Values.agent.ttl | toJson }}
  {{- /*
  The agent has no HTTP endpoint. Its job is the sidecar's identity, so its
  probes ask the sidecar over the control socket, as the agent's uid:
  `ktlsctl ready` exits 0 while the sidecar holds an identity that has not
  expired (and is not draining). Readiness: not ready until it delivered
  one. Liveness, with ten minutes of slack (the agent renews at half the
  TTL and retries with backoff): an identity missing or expired that long
  means the agent is stuck, and a restart is the remedy.
  */}}
  readinessProbe:
    exec:
      command: ["/usr/bin/ktlsctl", "--socket", {{ $sock | toJson }}, "--timeout", "3s", "ready"]
    periodSeconds: 10
    timeoutSeconds: 5
  livenessProbe:
    exec:
      command: ["/usr/bin/ktlsctl", "--socket", {{ $sock | toJson }}, "--timeout", "3s", "ready"]
    periodSeconds: 60
    timeoutSeconds: 5
    failureThreshold: 10
  securityContext:
    {{- include "ktls-sidecar.restricted" . | nindent 4 }}
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
  volumeMounts:
    - name: ktls-run
      mountPath: /run/ktls-sidecar
    - name: ktls-ca
      mountPath: /etc/ktls-ca
      readOnly: true
{{- end }}
- name: ktls-sidecar
  image: {{ include "ktls-sidecar.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if $native }}
  restartPolicy: Always
  {{- end }}
  command: ["/usr/bin/ktls-sidecar"]
  args:
    - {{ printf "--inbound=0.0.0.0:%v=127.0.0.1:%v" $sc.inboundPort .Values.workload.port | toJson }}
    {{- if $rd.enabled }}
    - {{ printf "--inbound=0.0.0.0:%v=127.0.0.1:%v" $rd.inboundPort .Values.workload.port | toJson }}
    {{- if not $rd.ipv4Only }}
    - {{ printf "--inbound=[::]:%v=127.0.0.1:%v" $rd.inboundPort .Values.workload.port | toJson }}
    {{- end }}
    - {{ printf "--outbound-transparent=127.0.0.1:%v" $rd.outboundPort | toJson }}
    {{- if not $rd.ipv4Only }}
    - {{ printf "--outbound-transparent=[::1]:%v" $rd.outboundPort | toJson }}
    {{- end }}
    - {{ printf "--redirect-check=%s" (include "ktls-sidecar.redirectManifest" .) | toJson }}
    {{- end }}
    {{- range $sc.outbound }}
    {{- $arg := printf "--outbound=127.0.0.1:%v=%s" (required "sidecar.outbound[].localPort is required" .localPort) (required "sidecar.outbound[].remote is required" .remote) }}
    {{- if .id }}{{ $arg = printf "%s,id=%s" $arg .id }}{{ end }}
    - {{ $arg | toJson }}
    {{- end }}
    {{- range $sc.allow }}
    - {{ printf "--allow=%s" . | toJson }}
    {{- end }}
    - {{ printf "--inbound-mode=%s" $sc.inboundMode | toJson }}
    - {{ printf "--spiffe-id=%s" $id | toJson }}
    {{- $ids := .Values.identity }}
    {{- if eq $ids.source "csi-driver-spiffe" }}
    - {{ printf "--identity-dir=%s" $ids.csiDriverSpiffe.mountPath | toJson }}
    - --identity-layout=csi-driver-spiffe
    {{- else if eq $ids.source "files" }}
    - {{ printf "--identity-dir=%s" $ids.files.mountPath | toJson }}
    - {{ printf "--identity-layout=%s" $ids.files.layout | toJson }}
    {{- else if eq $ids.source "spire" }}
    - {{ printf "--workload-api=unix://%s/%s" $ids.spire.mountPath $ids.spire.socketName | toJson }}
    {{- end }}
    - {{ printf "--control-socket=%s" $sock | toJson }}
    - {{ printf "--ktls=%s" $sc.ktls | toJson }}
    - {{ printf "--io=%s" $sc.io | toJson }}
    {{- if $sc.workers }}
    - {{ printf "--workers=%v" $sc.workers | toJson }}
    {{- end }}
    - {{ printf "--drain-timeout=%s" $sc.drainTimeout | toJson }}
    - {{ printf "--drain-delay=%s" (include "ktls-sidecar.drainDelay" .) | toJson }}
    - {{ printf "--admin=0.0.0.0:%v" $sc.adminPort | toJson }}
    - {{ printf "--log-level=%s" $sc.logLevel | toJson }}
    {{- range $sc.extraArgs }}
    - {{ . | toJson }}
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
  /drain and /quitquitquit answer loopback peers only. The redirect never
  steers the admin port (it steers workload.port alone), so these probes
  reach the sidecar with the redirect on too.
  */}}
  {{- if $native }}
  startupProbe:
    httpGet:
      path: /ready
      port: ktls-admin
    periodSeconds: 1
    failureThreshold: {{ $sc.startupTimeoutSeconds }}
  {{- else }}
  lifecycle:
    postStart:
      exec:
        command: ["/usr/bin/ktlsctl", "wait-ready", "--admin", {{ printf "127.0.0.1:%v" $sc.adminPort | toJson }}, "--timeout", {{ printf "%vs" $sc.startupTimeoutSeconds | toJson }}]
  {{- end }}
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
    {{- include "ktls-sidecar.restricted" . | nindent 4 }}
  resources:
    {{- toYaml $sc.resources | nindent 4 }}
  volumeMounts:
    - name: ktls-run
      mountPath: /run/ktls-sidecar
    {{- with include "ktls-sidecar.identityMountPath" . }}
    - name: ktls-identity
      mountPath: {{ . }}
      readOnly: true
    {{- end }}
{{- end -}}

{{/*
The redirect's installer: `ktls-redirect install --mode iptables` in the
pod's own network namespace, as an init container that runs to completion
before the sidecar starts (why iptables mode and not BPF: the chart's
README). It writes the manifest that the sidecar's --redirect-check proves
at start-up. Root with NET_ADMIN (nat rules) and NET_RAW (iptables-legacy);
nothing else, and its root file system stays read-only: /run is an emptyDir
for iptables' lock file.
*/}}
{{- define "ktls-sidecar.redirectContainer" -}}
{{- $sc := .Values.sidecar -}}
{{- $rd := .Values.redirect -}}
- name: ktls-redirect
  image: {{ default (include "ktls-sidecar.image" .) $rd.image }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/usr/bin/ktls-redirect"]
  args:
    - install
    - --mode=iptables
    - --name=ktls
    - --netns=/proc/self/ns/net
    - {{ printf "--inbound-port=%v" $rd.inboundPort | toJson }}
    - {{ printf "--outbound-port=%v" $rd.outboundPort | toJson }}
    - {{ printf "--app-port=%v" .Values.workload.port | toJson }}
    - {{ printf "--sidecar-uid=%v" $sc.uid | toJson }}
    {{- with .Values.workload.securityContext.runAsUser }}
    - {{ printf "--app-uid=%v" . | toJson }}
    {{- end }}
    {{- range $rd.excludePorts }}
    - {{ printf "--exclude-port=%v" . | toJson }}
    {{- end }}
    {{- range $rd.excludeCidrs }}
    - {{ printf "--exclude-cidr=%s" . | toJson }}
    {{- end }}
    {{- if $rd.ipv4Only }}
    - --ipv4-only
    {{- end }}
    - {{ printf "--manifest=%s" (include "ktls-sidecar.redirectManifest" .) | toJson }}
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
      add: ["NET_ADMIN", "NET_RAW"]
    seccompProfile:
      type: RuntimeDefault
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 64Mi}
  volumeMounts:
    - name: ktls-xtables
      mountPath: /run
    - name: ktls-run
      mountPath: /run/ktls-sidecar
{{- end -}}

{{- define "ktls-sidecar.volumes" -}}
- name: ktls-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- if .Values.redirect.enabled }}
- name: ktls-xtables
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- $ids := .Values.identity }}
{{- if eq $ids.source "csi-driver-spiffe" }}
{{- /*
cert-manager's csi-driver-spiffe: an inline CSI volume (a tmpfs on the
node) where the driver writes tls.crt and tls.key (and ca.crt when it is
given a CA bundle) and renews them; the sidecar watches them (inotify).
Its fs-group attribute makes the files readable by the sidecar's group
(runAsGroup is sidecar.uid): the driver writes them for root otherwise.
*/}}
- name: ktls-identity
  csi:
    driver: {{ $ids.csiDriverSpiffe.driver }}
    readOnly: true
    volumeAttributes:
      spiffe.csi.cert-manager.io/fs-group: {{ .Values.sidecar.uid | toString | quote }}
{{- else if eq $ids.source "spire" }}
{{- /*
The SPIFFE CSI driver mounts the directory holding the SPIRE agent's
Workload API socket: no hostPath in the workload's pod, so "restricted"
holds. The key reaches the sidecar over that socket, into its memory.
*/}}
- name: ktls-identity
  csi:
    driver: {{ $ids.spire.driver }}
    readOnly: true
{{- else if eq $ids.source "files" }}
{{- /*
The Secret's three keys of the layout, by name: whatever else it holds
stays out of the pod, and a missing key fails the pod's start, saying so.
0440 with the pod's fsGroup (sidecar.uid by default): the sidecar's group
reads them. Mounted whole (no subPath), so the kubelet's updates arrive and
the sidecar's watch takes them.
*/}}
- name: ktls-identity
  secret:
    secretName: {{ $ids.files.secretName }}
    defaultMode: 0440
    items:
      {{- range splitList ", " (include "ktls-sidecar.layoutFiles" $ids.files.layout) }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- if include "ktls-sidecar.agentEnabled" . }}
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

{{/* Names: DNS-1035 labels (Service names): no dots (model names have them), 63 characters at most. */}}
{{- define "packager.name" -}}
{{- default .Chart.Name .Values.nameOverride | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "packager.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "packager.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "packager.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "packager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "packager.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "packager.labels" -}}
helm.sh/chart: {{ include "packager.chart" . }}
{{ include "packager.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
packager.dev/profile: {{ .Values.profile.name | trunc 63 | trimSuffix "-" | quote }}
{{- end }}

{{- define "packager.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "packager.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A plan spanning nodes runs as a LeaderWorkerSet; one node as a Deployment. */}}
{{- define "packager.multiNode" -}}
{{- if gt (int .Values.profile.nodes) 1 }}true{{ end }}
{{- end }}

{{/* The pods behind the Service: every server pod, or only group leaders. */}}
{{- define "packager.servingSelector" -}}
{{ include "packager.selectorLabels" . }}
{{- if include "packager.multiNode" . }}
app.kubernetes.io/component: leader
{{- else }}
app.kubernetes.io/component: server
{{- end }}
{{- end }}

{{- define "packager.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}
{{- end }}

{{- define "packager.weightsClaim" -}}
{{- default (printf "%s-weights" (include "packager.fullname" .)) .Values.weights.volume.existingClaim }}
{{- end }}

{{/* CPU/memory from values plus the vendor's accelerator key with the per-pod count. */}}
{{- define "packager.resources" -}}
{{- $requests := deepCopy (default dict .Values.resources.requests) }}
{{- $limits := deepCopy (default dict .Values.resources.limits) }}
{{- if and .Values.accelerator.resourceKey (gt (int .Values.accelerator.count) 0) }}
{{- $_ := set $requests .Values.accelerator.resourceKey (int .Values.accelerator.count) }}
{{- $_ := set $limits .Values.accelerator.resourceKey (int .Values.accelerator.count) }}
{{- end }}
{{- with $requests }}
requests:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $limits }}
limits:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "packager.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ default 5 .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}

{{/*
The pod spec shared by the Deployment and both LeaderWorkerSet templates.
Call with (dict "root" $ "role" "server|leader|worker").
*/}}
{{- define "packager.podSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $role := .role }}
serviceAccountName: {{ include "packager.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "packager.ociWeights.initContainers" $root }}
initContainers:
  {{- . | nindent 2 }}
{{- end }}
containers:
  - name: {{ $role }}
    image: {{ include "packager.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    # No command: every pod (server, LeaderWorkerSet leader and worker) starts through the image's
    # launcher, which reads the mounted plan and, for a group, starts Ray (runtimes/launch/lws.py).
    env:
      - name: PACKAGER_ROLE
        value: {{ $role }}
      - name: PACKAGER_PROFILE
        value: {{ $v.profile.name | quote }}
      # The mounted plan ConfigMap: chart values change the plan without a rebuild.
      - name: PACKAGER_PLAN
        value: /etc/packager/plan.json
      # baked: the image's own weights; volume: the claim below (it hides a baked image's weights);
      # oci: the artifact's files at the model dir, which the launcher checks exactly as a volume's.
      - name: PACKAGER_WEIGHTS_MODE
        value: {{ ternary "volume" $v.weights.mode (eq $v.weights.mode "oci") | quote }}
      {{- if eq $v.weights.mode "volume" }}
      # The weights volume: the launcher downloads into it once (a lock and a marker on the claim).
      - name: PACKAGER_MODEL_DIR
        value: /opt/packager/model
      {{- end }}
      {{- include "packager.ociWeights.env" $root | nindent 6 }}
      {{- if ne $role "server" }}
      - name: PACKAGER_RAY_PORT
        value: {{ $v.multiNode.rayPort | quote }}
      - name: PACKAGER_RAY_JOIN_TIMEOUT
        value: {{ $v.multiNode.joinTimeoutSeconds | quote }}
      {{- end }}
      # The launcher binds the engine here; the probes and the Service use the same port.
      - name: PACKAGER_PORT
        value: {{ $v.containerPort | quote }}
      # The root filesystem is read-only: every cache goes to the writable volume.
      - name: HOME
        value: /var/cache/packager
      - name: XDG_CACHE_HOME
        value: /var/cache/packager
      - name: HF_HOME
        value: /var/cache/packager/huggingface
      - name: HF_HUB_OFFLINE
        value: "1"
      - name: TRITON_CACHE_DIR
        value: /var/cache/packager/triton
      - name: VLLM_CACHE_ROOT
        value: /var/cache/packager/vllm
      - name: RAY_TMPDIR
        value: /tmp/ray
      {{- if $v.weights.tokenSecret }}
      - name: HF_TOKEN_PATH
        value: /var/run/secrets/packager/hf/token
      {{- end }}
      {{- if and (ne $role "worker") (include "packager.authSecret" $root) }}
      {{- include "packager.authEnv" $root | nindent 6 }}
      {{- end }}
      {{- with $v.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if ne $role "worker" }}
    ports:
      - name: http
        containerPort: {{ $v.containerPort }}
        protocol: TCP
    startupProbe:
      {{- include "packager.httpProbe" $v.probes.startup | nindent 6 }}
    livenessProbe:
      {{- include "packager.httpProbe" $v.probes.liveness | nindent 6 }}
    readinessProbe:
      {{- include "packager.httpProbe" $v.probes.readiness | nindent 6 }}
    {{- else }}
    ports:
      - name: ray
        containerPort: {{ $v.multiNode.rayPort }}
        protocol: TCP
    {{- end }}
    resources:
      {{- include "packager.resources" $root | trim | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: shm
        mountPath: /dev/shm
      - name: tmp
        mountPath: /tmp
      - name: cache
        mountPath: /var/cache/packager
      - name: plan
        mountPath: /etc/packager
        readOnly: true
      {{- if eq $v.weights.mode "volume" }}
      - name: weights
        mountPath: /opt/packager/model
        readOnly: {{ $v.weights.volume.readOnly }}
      {{- end }}
      {{- include "packager.ociWeights.mount" $root | nindent 6 }}
      {{- if $v.weights.tokenSecret }}
      - name: hf-token
        mountPath: /var/run/secrets/packager/hf
        readOnly: true
      {{- end }}
volumes:
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $v.shm.sizeLimit }}
  - name: tmp
    emptyDir: {}
  - name: cache
    {{- if $v.cache.existingClaim }}
    persistentVolumeClaim:
      claimName: {{ $v.cache.existingClaim }}
    {{- else }}
    emptyDir:
      sizeLimit: {{ $v.cache.sizeLimit }}
    {{- end }}
  - name: plan
    configMap:
      name: {{ include "packager.fullname" $root }}-plan
  {{- if eq $v.weights.mode "volume" }}
  - name: weights
    persistentVolumeClaim:
      claimName: {{ include "packager.weightsClaim" $root }}
      readOnly: {{ $v.weights.volume.readOnly }}
  {{- end }}
  {{- include "packager.ociWeights.volume" $root | nindent 2 }}
  {{- if $v.weights.tokenSecret }}
  - name: hf-token
    secret:
      secretName: {{ $v.weights.tokenSecret }}
      defaultMode: 0440  # owner root, group fsGroup: the non-root server reads it through its group
      items:
        - key: token
          path: token
  {{- end }}
{{- end }}

{{/* What HPA and KEDA scale: the Deployment or the LeaderWorkerSet (it has a scale subresource). */}}
{{- define "packager.scaleTargetRef" -}}
{{- if include "packager.multiNode" . }}
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
{{- else }}
apiVersion: apps/v1
kind: Deployment
{{- end }}
name: {{ include "packager.fullname" . }}
{{- end }}

{{/* The Secret holding the API key, or empty when the API is open. */}}
{{/* One rule for every object that takes the API beyond the cluster: a key, or open on purpose.
Call with (list $ "what it is" "the value that turns it on"). */}}
{{- define "packager.requireKey" -}}
{{- $root := index . 0 }}
{{- if not (or (include "packager.authSecret" $root) $root.Values.auth.allowUnauthenticated) }}
{{- fail (printf "%s: %s would serve the model's API with no key to anyone who reaches it; set auth.existingSecret (a Secret holding the key) or auth.apiKey, or set auth.allowUnauthenticated=true to expose it open on purpose" (index . 2) (index . 1)) }}
{{- end }}
{{- end }}

{{- define "packager.authSecret" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecret }}
{{- else if .Values.auth.apiKey }}{{ include "packager.fullname" . }}-auth
{{- end }}
{{- end }}

{{/* The key as the environment variables the engines read (never argv, which ps shows). */}}
{{- define "packager.authEnv" -}}
{{- range list "PACKAGER_API_KEY" "VLLM_API_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "packager.authSecret" $ }}
      key: {{ $.Values.auth.secretKey }}
{{- end }}
{{- end }}

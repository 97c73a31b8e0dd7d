{{/*
The inference pool and its endpoint picker (router.*): names, labels and the llm-d labels on server pods.
*/}}

{{- define "packager.router.eppName" -}}
{{- printf "%s-epp" (include "packager.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{/* The endpoint picker's own labels: not the server's selector labels, so the Service, ServiceMonitor,
NetworkPolicy and PodDisruptionBudget of the servers never select it. */}}
{{- define "packager.router.eppSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-epp" (include "packager.name" . | trunc 59 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: endpoint-picker
{{- end }}

{{- define "packager.router.eppLabels" -}}
helm.sh/chart: {{ include "packager.chart" . }}
{{ include "packager.router.eppSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.router.endpointPicker.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* llm-d's labels on every pod that serves HTTP (Deployment pods, LeaderWorkerSet leaders; never workers).
engine-type tells the picker which metric names to read: the fallback runtime exports vLLM's names, so
its pods are scored exactly as vLLM's. role "both": prefill and decode in one pod (what KServe sets). */}}
{{- define "packager.router.podLabels" -}}
llm-d.ai/inference-serving: "true"
llm-d.ai/model: {{ .Values.model.name | replace "/" "-" | trunc 63 | trimSuffix "-" | trimSuffix "." | quote }}
llm-d.ai/role: both
llm-d.ai/engine-type: {{ .Values.router.engineType | quote }}
{{- end }}

{{/* The InferencePool's selector: exactly the serving pods (leaders only for a LeaderWorkerSet). */}}
{{- define "packager.router.poolSelector" -}}
{{ include "packager.servingSelector" . }}
llm-d.ai/inference-serving: "true"
{{- end }}

{{/* LoRA: the lora-affinity-scorer joins the profile when router.loraAffinity is set or the plan
serves adapters (model.adapters of the plan the ConfigMap carries: `plan:` values, else plan.json). */}}
{{- define "packager.router.loraAffinity" -}}
{{- $plan := .Values.plan | default (.Files.Get "plan.json" | default "{}" | fromJson) }}
{{- if or .Values.router.loraAffinity (($plan.model | default dict).adapters) }}true{{ end }}
{{- end }}

{{- define "packager.router.eppImage" -}}
{{- $i := .Values.router.endpointPicker.image }}
{{- if $i.digest }}{{ printf "%s@%s" $i.repository $i.digest }}{{ else }}{{ printf "%s:%s" $i.repository $i.tag }}{{ end }}
{{- end }}

{{/* The endpoint picker's restricted Pod Security Standard, as the servers'; 65532 is the image's non-root user. */}}
{{- define "packager.router.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "packager.router.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

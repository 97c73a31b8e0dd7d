{{/*
weights.mode=oci: the weights are a CNCF ModelPack artifact (weights.oci.artifact, pinned
by digest) beside a code-only image, at /opt/packager/model in the server:
  weights.oci.mount=image     an image volume (volumes[].image, Kubernetes >= 1.33 with a
                              runtime that mounts OCI artifacts)
  weights.oci.mount=modelcar  an init container (the model image's own Python) fetches the
                              files, each checked by digest, into an emptyDir, or into the
                              claim weights.oci.modelcar.existingClaim (kept across restarts;
                              files already there with the right digest are not fetched again)
Either way the launcher sees volume-mode weights: every file at the model dir, checked against
the digests recorded in the image. Each helper renders nothing unless weights.mode is oci.
*/}}

{{- define "packager.ociWeights.on" -}}
{{- if eq .Values.weights.mode "oci" }}true{{ end }}
{{- end }}

{{- define "packager.ociWeights.env" -}}
{{- if include "packager.ociWeights.on" . }}
- name: PACKAGER_MODEL_DIR
  value: /opt/packager/model
{{- end }}
{{- end }}

{{- define "packager.ociWeights.mount" -}}
{{- if include "packager.ociWeights.on" . }}
- name: weights
  mountPath: /opt/packager/model
  readOnly: true
{{- end }}
{{- end }}

{{- define "packager.ociWeights.volume" -}}
{{- if include "packager.ociWeights.on" . }}
{{- $oci := .Values.weights.oci }}
- name: weights
  {{- if eq $oci.mount "image" }}
  image:
    reference: {{ required "weights.oci.artifact: the weights artifact, HOST/REPO@sha256:..." $oci.artifact | quote }}
    pullPolicy: {{ .Values.image.pullPolicy }}
  {{- else if $oci.modelcar.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $oci.modelcar.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $oci.modelcar.sizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "packager.ociWeights.initContainers" -}}
{{- if and (include "packager.ociWeights.on" .) (eq .Values.weights.oci.mount "modelcar") }}
{{- $oci := .Values.weights.oci }}
- name: modelcar
  image: {{ include "packager.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /opt/packager/venv/bin/python
    - -m
    - packager.supply.pull
    - {{ required "weights.oci.artifact: the weights artifact, HOST/REPO@sha256:..." $oci.artifact | quote }}
    - --dest
    - /opt/packager/model
    {{- if $oci.modelcar.plainHttp }}
    - --plain-http
    {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml $oci.modelcar.resources | nindent 4 }}
  volumeMounts:
    - name: weights
      mountPath: /opt/packager/model
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}

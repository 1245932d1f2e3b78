{{/*
Names, labels and the pod template shared by the Deployment (watch), the CronJob and the Job.
*/}}

{{- define "ocync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; the release name alone when it already contains the chart name. */}}
{{- define "ocync.fullname" -}}
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

{{- define "ocync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ocync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ocync.labels" -}}
{{ include "ocync.baseLabels" . }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "ocync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ocync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ocync.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "ocync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "ocync.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Where the config comes from: exactly one of config, existingConfigMap and configUri.
Checked here (not only in the schema) so the message names the fix.
*/}}
{{- define "ocync.configSources" -}}
{{- $sources := list }}
{{- if .Values.config }}{{ $sources = append $sources "config" }}{{ end }}
{{- if .Values.existingConfigMap }}{{ $sources = append $sources "existingConfigMap" }}{{ end }}
{{- if .Values.configUri }}{{ $sources = append $sources "configUri" }}{{ end }}
{{- if eq (len $sources) 0 }}
{{- fail "ocync needs a config: set `config` (the ocync.yaml content), `existingConfigMap` or `configUri` (s3://bucket/key)" }}
{{- else if gt (len $sources) 1 }}
{{- fail (printf "set only one of config, existingConfigMap and configUri (got %s)" (join ", " $sources)) }}
{{- end }}
{{- end }}

{{/* The ocync.yaml text of the chart's ConfigMap. */}}
{{- define "ocync.configText" -}}
{{- if kindIs "string" .Values.config }}
{{- .Values.config }}
{{- else }}
{{- toYaml .Values.config }}
{{- end }}
{{- end }}

{{/* True when the chart mounts a ConfigMap (its own or an existing one). */}}
{{- define "ocync.mountsConfigMap" -}}
{{- if not .Values.configUri }}true{{ end }}
{{- end }}

{{- define "ocync.configMapName" -}}
{{- default (printf "%s-config" (include "ocync.fullname" .)) .Values.existingConfigMap }}
{{- end }}

{{- define "ocync.configKey" -}}
{{- if .Values.existingConfigMap }}{{ .Values.existingConfigMapKey }}{{ else }}ocync.yaml{{ end }}
{{- end }}

{{/* What --config gets. */}}
{{- define "ocync.configLocation" -}}
{{- if .Values.configUri }}
{{- .Values.configUri }}
{{- else }}
{{- printf "/etc/ocync/%s" (include "ocync.configKey" .) }}
{{- end }}
{{- end }}

{{/*
Changes whenever the config source changes, so `helm upgrade` with a new config rolls the
pods. For an existingConfigMap or a configUri only the reference is known at render time.
*/}}
{{- define "ocync.configChecksum" -}}
{{- if .Values.config }}
{{- include "ocync.configText" . | sha256sum }}
{{- else if .Values.existingConfigMap }}
{{- printf "configmap:%s/%s" .Values.existingConfigMap .Values.existingConfigMapKey | sha256sum }}
{{- else }}
{{- printf "uri:%s" .Values.configUri | sha256sum }}
{{- end }}
{{- end }}

{{/* Whether the pod carries azure.workload.identity/use: "true". */}}
{{- define "ocync.azureWorkloadIdentity" -}}
{{- if or (eq .Values.workloadIdentity.provider "azure") (hasKey .Values.serviceAccount.annotations "azure.workload.identity/client-id") (hasKey .Values.serviceAccount.labels "azure.workload.identity/use") }}true{{ end }}
{{- end }}

{{/* The ServiceAccount annotations the workload identity provider needs. */}}
{{- define "ocync.workloadIdentityAnnotations" -}}
{{- $wi := .Values.workloadIdentity }}
{{- if eq $wi.provider "aws" }}
eks.amazonaws.com/role-arn: {{ $wi.aws.roleArn | quote }}
{{- if $wi.aws.stsRegionalEndpoints }}
eks.amazonaws.com/sts-regional-endpoints: "true"
{{- end }}
{{- else if eq $wi.provider "gcp" }}
iam.gke.io/gcp-service-account: {{ $wi.gcp.serviceAccount | quote }}
{{- else if eq $wi.provider "azure" }}
azure.workload.identity/client-id: {{ $wi.azure.clientId | quote }}
{{- if $wi.azure.tenantId }}
azure.workload.identity/tenant-id: {{ $wi.azure.tenantId | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Every ServiceAccount annotation, as YAML: the user's win over workloadIdentity's. */}}
{{- define "ocync.serviceAccountAnnotations" -}}
{{- $derived := include "ocync.workloadIdentityAnnotations" . | fromYaml | default dict }}
{{- $all := merge (deepCopy .Values.serviceAccount.annotations) $derived }}
{{- with $all }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* The container arguments (the image's ENTRYPOINT is `ocync`). */}}
{{- define "ocync.args" -}}
{{- if eq .Values.mode "watch" }}
- watch
{{- else }}
- sync
{{- end }}
- --config
- {{ include "ocync.configLocation" . | quote }}
{{- if eq .Values.mode "watch" }}
- --interval
- {{ .Values.watch.interval | quote }}
- --health-bind
- {{ .Values.watch.healthBind | quote }}
- --health-port
- {{ .Values.watch.healthPort | quote }}
{{- end }}
- --grace-period
- {{ .Values.gracePeriod | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The pod template of every mode. */}}
{{- define "ocync.podTemplate" -}}
metadata:
  labels:
    {{- include "ocync.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: {{ .Values.mode }}
    {{- if include "ocync.azureWorkloadIdentity" . }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "ocync.configChecksum" . }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ocync.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if ne .Values.mode "watch" }}
  restartPolicy: Never
  {{- end }}
  terminationGracePeriodSeconds: {{ add .Values.gracePeriod 15 }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: ocync
      image: {{ include "ocync.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "ocync.args" . | trim | nindent 8 }}
      {{- with .Values.env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if eq .Values.mode "watch" }}
      ports:
        - name: health
          containerPort: {{ .Values.watch.healthPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        {{- toYaml .Values.watch.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: health
        {{- toYaml .Values.watch.readinessProbe | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if include "ocync.mountsConfigMap" . }}
        # The directory, not a subPath: kubelet then refreshes the file when the ConfigMap
        # changes, and watch mode picks it up on its next cycle.
        - name: config
          mountPath: /etc/ocync
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      {{- $tmp := dict }}
      {{- with .Values.tmpDir.medium }}{{ $_ := set $tmp "medium" . }}{{ end }}
      {{- with .Values.tmpDir.sizeLimit }}{{ $_ := set $tmp "sizeLimit" . }}{{ end }}
      emptyDir:{{ if $tmp }}{{ toYaml $tmp | nindent 8 }}{{ else }} {}{{ end }}
    {{- if include "ocync.mountsConfigMap" . }}
    - name: config
      configMap:
        name: {{ include "ocync.configMapName" . }}
        items:
          - key: {{ include "ocync.configKey" . }}
            path: {{ include "ocync.configKey" . }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The Job spec shared by the CronJob's jobTemplate and the one-shot Job. */}}
{{- define "ocync.jobSpec" -}}
backoffLimit: {{ .Values.job.backoffLimit }}
{{- with .Values.job.activeDeadlineSeconds }}
activeDeadlineSeconds: {{ . }}
{{- end }}
{{- if not (kindIs "invalid" .Values.job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ .Values.job.ttlSecondsAfterFinished }}
{{- end }}
{{- if .Values.job.failFastOnConfigAndAuthErrors }}
# Exit 3 (config error) and 4 (authentication failed) come back on every retry.
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: ocync
        operator: In
        values: [3, 4]
{{- end }}
template:
  {{- include "ocync.podTemplate" . | nindent 2 }}
{{- end }}

{{/* Cross-value checks the schema cannot express with a helpful message. */}}
{{- define "ocync.validate" -}}
{{- include "ocync.configSources" . }}
{{- if and .Values.workloadIdentity.provider (not .Values.serviceAccount.create) }}
{{- fail (printf "workloadIdentity.provider=%s annotates the ServiceAccount the chart creates: set serviceAccount.create=true, or annotate your ServiceAccount %q yourself and leave provider empty" .Values.workloadIdentity.provider (include "ocync.serviceAccountName" .)) }}
{{- end }}
{{- end }}

{{/* The pull secret refresher's objects (CronJob names may have at most 52 characters). */}}
{{- define "ocync.pullSecretRefresherName" -}}
{{- printf "%s-pull-secret" (include "ocync.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{/* Labels of the objects beside the workload (refresher, mirror sets), without a component. */}}
{{- define "ocync.baseLabels" -}}
helm.sh/chart: {{ include "ocync.chart" . }}
{{ include "ocync.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ocync.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ocync.pullSecretRefresherLabels" -}}
{{ include "ocync.baseLabels" . }}
app.kubernetes.io/component: pull-secret-refresher
{{- end }}

{{/*
The refresher's pod labels leave out app.kubernetes.io/name, so the watch Deployment's and the
metrics Service's selectors (name + instance) never match its pods.
*/}}
{{- define "ocync.pullSecretRefresherPodLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: {{ include "ocync.name" . }}
app.kubernetes.io/component: pull-secret-refresher
{{- end }}

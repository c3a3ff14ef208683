{{/* Chart name, at most 63 characters because it ends up in label values. */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object the release creates: the release name, with the chart
name appended unless the release name already contains it.
*/}}
{{- define "berth.fullname" -}}
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

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod; they must never change between releases. */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: berth
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What berth does in each namespace it watches. The same rules go into a
ClusterRole (all namespaces) or into a Role per watched namespace.
Server-side apply of an object that does not exist yet needs `create`
besides `patch`.
*/}}
{{- define "berth.namespacedRules" -}}
- apiGroups: [berth.dev]
  resources: [registries]
  # patch: Kopf's finalizer and progress annotations.
  verbs: [get, list, watch, patch, update]
- apiGroups: [berth.dev]
  resources: [registries/status]
  verbs: [get, patch, update]
- apiGroups: [berth.dev]
  # Owner references with blockOwnerDeletion on a Registry's children.
  resources: [registries/finalizers]
  verbs: [update]
- apiGroups: [berth.dev]
  resources: [imagerepositories]
  verbs: [get, list, watch]
- apiGroups: [berth.dev]
  resources: [imagerepositories/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets, configmaps, services, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [networking.k8s.io]
  # delete: an Ingress removed from a Registry's spec is deleted.
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  # Events on condition transitions.
  resources: [events]
  verbs: [create, patch]
{{- end }}

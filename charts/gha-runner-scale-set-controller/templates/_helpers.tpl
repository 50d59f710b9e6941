{{/* Where the chart's namespaced objects go. */}}
{{- define "gha-rs-controller.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{/* ARC's names: <release>-gha-rs-controller (the name "gha-rs-controller" unless overridden). */}}
{{- define "gha-rs-controller.name" -}}
{{- default "gha-rs-controller" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gha-rs-controller.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gha-rs-controller.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gha-rs-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gha-rs-controller.name" . }}
app.kubernetes.io/namespace: {{ include "gha-rs-controller.namespace" . }}
{{- end -}}

{{- define "gha-rs-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gha-rs-controller.selectorLabels" . }}
app.kubernetes.io/part-of: gha-rs-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gha-rs-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gha-rs-controller.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- if not .Values.serviceAccount.name -}}
{{- fail "serviceAccount.name is required when serviceAccount.create is false (the default ServiceAccount gets no rights)" -}}
{{- end -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gha-rs-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{- define "gha-rs-controller.watchNamespace" -}}
{{- (.Values.flags | default dict).watchSingleNamespace | default "" -}}
{{- end -}}

{{/* The rules on the scale-set kinds the controller reconciles (all but the listeners): exactly the
requests of its code (tests/unit/chart/test_scale_set_rbac.py). Finalizers are written with patch;
`update` on the finalizers subresources is what blockOwnerDeletion on an owner reference needs. */}}
{{- define "gha-rs-controller.runnerRules" -}}
- apiGroups: [actions.github.com]
  resources: [autoscalingrunnersets]
  verbs: [list, watch, patch]
- apiGroups: [actions.github.com]
  resources: [ephemeralrunnersets, ephemeralrunners]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [actions.github.com]
  resources: [autoscalingrunnersets/status, ephemeralrunnersets/status, ephemeralrunners/status]
  verbs: [patch]
- apiGroups: [actions.github.com]
  resources: [autoscalingrunnersets/finalizers, ephemeralrunnersets/finalizers, ephemeralrunners/finalizers]
  verbs: [update]
{{- end -}}

{{/* The AutoscalingListener objects (in the controller's namespace; the listeners themselves run in
the controller process, docs/scale-sets-listener.md): created and deleted with their scale set, their
status written by the listener. */}}
{{- define "gha-rs-controller.listenerRules" -}}
- apiGroups: [actions.github.com]
  resources: [autoscalinglisteners]
  verbs: [list, watch, create, delete]
- apiGroups: [actions.github.com]
  resources: [autoscalinglisteners/status]
  verbs: [patch]
{{- end -}}

{{/* Reading (the informers' caches: runner pods and JIT Secrets); writes come from the scale-set
chart's manager Role in each runner namespace. */}}
{{- define "gha-rs-controller.readRules" -}}
- apiGroups: [""]
  resources: [pods, secrets]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

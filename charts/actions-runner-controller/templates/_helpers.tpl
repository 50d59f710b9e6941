{{/* Where the chart's namespaced objects go. */}}
{{- define "runnerd.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "runnerd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name alone when it already contains the chart's name (as ARC's chart names things). */}}
{{- define "runnerd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "runnerd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runnerd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "runnerd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runnerd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "runnerd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "runnerd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A value as text; whole numbers without an exponent (a values file's 12345678 is a float). */}}
{{- define "runnerd.plain" -}}
{{- if kindIs "float64" . -}}
{{- printf "%.0f" . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "runnerd.secretName" -}}
{{- default (include "runnerd.fullname" .) .Values.authSecret.name -}}
{{- end -}}

{{- define "runnerd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/* The namespace the controller serves; empty when it serves all. */}}
{{- define "runnerd.watchNamespace" -}}
{{- if .Values.scope.singleNamespace -}}
{{- default (include "runnerd.namespace" .) .Values.scope.watchNamespace -}}
{{- end -}}
{{- end -}}

{{- define "runnerd.leaderElectionId" -}}
{{- default "actions-runner-controller" .Values.leaderElectionId -}}
{{- end -}}

{{/* The port number of a Go host:port address such as ":8081". */}}
{{- define "runnerd.port" -}}
{{- regexFind "[0-9]+$" . -}}
{{- end -}}

{{- define "runnerd.serviceMonitorEnabled" -}}
{{- $sm := .Values.metrics.serviceMonitor -}}
{{- if kindIs "map" $sm -}}
{{- if or $sm.enable $sm.enabled }}true{{ end -}}
{{- else if $sm -}}
true
{{- end -}}
{{- end -}}

{{/* env as ARC's chart takes it: a map of name: value, or a list of EnvVar objects. */}}
{{- define "runnerd.extraEnv" -}}
{{- if kindIs "slice" . }}
{{ toYaml . }}
{{- else }}
{{- range $key, $value := . }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* GITHUB_* credentials from a Secret's keys (each optional, as runnerd reports what is missing). */}}
{{- define "runnerd.credentialsEnv" -}}
{{- range $env, $key := dict "GITHUB_TOKEN" "github_token" "GITHUB_APP_ID" "github_app_id" "GITHUB_APP_INSTALLATION_ID" "github_app_installation_id" "GITHUB_APP_PRIVATE_KEY" "github_app_private_key" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $.secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{- define "runnerd.githubEndpointsEnv" -}}
{{- with .Values.githubEnterpriseServerURL }}
- name: GITHUB_ENTERPRISE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.githubURL }}
- name: GITHUB_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Webhook server names (ARC's: <release>-github-webhook-server). */}}
{{- define "runnerd.webhook.name" -}}
{{- default .Chart.Name .Values.githubWebhookServer.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runnerd.webhook.instance" -}}
{{- printf "%s-github-webhook-server" .Release.Name -}}
{{- end -}}

{{- define "runnerd.webhook.fullname" -}}
{{- if .Values.githubWebhookServer.fullnameOverride -}}
{{- .Values.githubWebhookServer.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "runnerd.webhook.name" . -}}
{{- $instance := include "runnerd.webhook.instance" . -}}
{{- if contains $name $instance -}}
{{- $instance | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-github-webhook-server" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "runnerd.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runnerd.webhook.name" . }}
app.kubernetes.io/instance: {{ include "runnerd.webhook.instance" . }}
{{- end -}}

{{/* Not the controller's selector labels: its ServiceMonitor must not pick up this Service. */}}
{{- define "runnerd.webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runnerd.webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "runnerd.webhook.serviceAccountName" -}}
{{- if .Values.githubWebhookServer.serviceAccount.create -}}
{{- default (include "runnerd.webhook.fullname" .) .Values.githubWebhookServer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.githubWebhookServer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "runnerd.webhook.secretName" -}}
{{- default (include "runnerd.webhook.fullname" .) .Values.githubWebhookServer.secret.name -}}
{{- end -}}

{{/* Refuse values that would install something that cannot work, saying what to change. */}}
{{- define "runnerd.validate" -}}
{{- if regexMatch "(^|/)(summerwind/actions-runner-controller|actions/actions-runner-controller)$" .Values.image.repository -}}
{{- fail (printf "image.repository=%s is ARC's controller image, which does not run this chart's commands: remove the override (runnerd's image is the default) or point it at a runnerd image" .Values.image.repository) -}}
{{- end -}}
{{- if or .Values.authSecret.github_basicauth_username .Values.authSecret.github_basicauth_password -}}
{{- fail "authSecret.github_basicauth_*: runnerd does not support basic authentication to GitHub; use github_token or a GitHub App" -}}
{{- end -}}
{{- if and .Values.authSecret.enabled .Values.authSecret.create -}}
{{- $a := .Values.authSecret -}}
{{- $app := list -}}
{{- range $key := list "github_app_id" "github_app_installation_id" "github_app_private_key" -}}
{{- if not (index $a $key) }}{{ $app = append $app $key }}{{ end -}}
{{- end -}}
{{- if and (not $a.github_token) (eq (len $app) 3) -}}
{{- fail "authSecret.create=true needs authSecret.github_token, or authSecret.github_app_id + github_app_installation_id + github_app_private_key" -}}
{{- end -}}
{{- if and (not $a.github_token) (gt (len $app) 0) -}}
{{- fail (printf "authSecret: incomplete GitHub App credentials, missing %s" (join ", " $app)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.githubWebhookServer.enabled .Values.githubWebhookServer.secret.create (not .Values.githubWebhookServer.secret.github_webhook_secret_token) -}}
{{- fail "githubWebhookServer.secret.create=true needs githubWebhookServer.secret.github_webhook_secret_token: runnerd checks the signature of every webhook delivery" -}}
{{- end -}}
{{- if .Values.actionsMetricsServer.enabled -}}
{{- fail "actionsMetricsServer.enabled: ARC's actions metrics server is not part of runnerd; set it to false" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (hasKey .Values.podDisruptionBudget "minAvailable") (hasKey .Values.podDisruptionBudget "maxUnavailable") -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- end -}}

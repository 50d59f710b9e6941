{{/* The AutoscalingRunnerSet's name: runnerScaleSetName or the release name, "_" -> "-", at most 45 characters. */}}
{{- define "gha-rs.scaleSetName" -}}
{{- $name := default .Release.Name .Values.runnerScaleSetName | replace "_" "-" | lower -}}
{{- if gt (len $name) 45 -}}
{{- fail "Name must have up to 45 characters" -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "gha-rs.fullname" -}}
{{- printf "%s-gha-rs" (include "gha-rs.scaleSetName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gha-rs.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "gha-rs.mode" -}}
{{- (.Values.containerMode | default dict).type | default "" -}}
{{- end -}}

{{- define "gha-rs.githubSecretName" -}}
{{- if kindIs "string" .Values.githubConfigSecret -}}
{{- .Values.githubConfigSecret -}}
{{- else -}}
{{- include "gha-rs.fullname" . }}-github-secret
{{- end -}}
{{- end -}}

{{- define "gha-rs.noPermissionServiceAccountName" -}}
{{- include "gha-rs.fullname" . }}-no-permission
{{- end -}}

{{- define "gha-rs.kubeModeName" -}}
{{- include "gha-rs.fullname" . }}-kube-mode
{{- end -}}

{{- define "gha-rs.managerName" -}}
{{- include "gha-rs.fullname" . }}-manager
{{- end -}}

{{/* Labels of one object: (list $ "<resourceMeta key>"); the chart's, then the user's chart-wide and
per-resource ones (reserved keys and actions.github.com/ skipped). */}}
{{- define "gha-rs.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "gha-rs.scaleSetName" $root }}
app.kubernetes.io/instance: {{ include "gha-rs.scaleSetName" $root }}
app.kubernetes.io/version: {{ $root.Chart.Version | quote }}
app.kubernetes.io/part-of: gha-rs
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
actions.github.com/scale-set-name: {{ include "gha-rs.scaleSetName" $root }}
actions.github.com/scale-set-namespace: {{ include "gha-rs.namespace" $root }}
{{- include "gha-rs.userMeta" (list $root (index . 1) "labels") }}
{{- end -}}

{{/* Annotations of one object: (list $ "<resourceMeta key>"). */}}
{{- define "gha-rs.annotations" -}}
{{- include "gha-rs.userMeta" (list (index . 0) (index . 1) "annotations") }}
{{- end -}}

{{- define "gha-rs.userMeta" -}}
{{- $root := index . 0 -}}
{{- $what := index . 2 -}}
{{- $out := dict -}}
{{- range $k, $v := (get $root.Values $what | default dict) }}{{ $_ := set $out $k $v }}{{ end -}}
{{- $perResource := get ($root.Values.resourceMeta | default dict) (index . 1) | default dict -}}
{{- range $k, $v := (get $perResource $what | default dict) }}{{ $_ := set $out $k $v }}{{ end -}}
{{- range $k, $v := $out }}
{{- if not (or (hasPrefix "actions.github.com/" $k) (hasPrefix "app.kubernetes.io/" $k) (eq $k "helm.sh/chart")) }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The controller's ServiceAccount as "namespace/name": the values, else the Deployment labelled
part-of=gha-rs-controller (helm install/upgrade can look it up), else ARC's quickstart names. */}}
{{- define "gha-rs.controllerServiceAccount" -}}
{{- $csa := .Values.controllerServiceAccount | default dict -}}
{{- if and $csa.name $csa.namespace -}}
{{- printf "%s/%s" $csa.namespace $csa.name -}}
{{- else -}}
{{- $ns := include "gha-rs.namespace" . -}}
{{- $found := list -}}
{{- range ((lookup "apps/v1" "Deployment" "" "").items | default list) -}}
{{- $l := .metadata.labels | default dict -}}
{{- if eq (get $l "app.kubernetes.io/part-of") "gha-rs-controller" -}}
{{- $watch := get $l "actions.github.com/controller-watch-single-namespace" -}}
{{- if or (not $watch) (eq $watch $ns) -}}
{{- $found = append $found (printf "%s/%s" (get $l "actions.github.com/controller-service-account-namespace") (get $l "actions.github.com/controller-service-account-name")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if gt (len $found) 1 -}}
{{- fail (printf "Multiple gha-rs-controller deployments found (%s): set controllerServiceAccount.namespace and controllerServiceAccount.name" (join ", " $found)) -}}
{{- else if eq (len $found) 1 -}}
{{- first $found -}}
{{- else -}}
arc-systems/arc-gha-rs-controller
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that cannot work, with ARC's messages. */}}
{{- define "gha-rs.validate" -}}
{{- if not .Values.githubConfigUrl -}}
{{- fail "githubConfigUrl is required" -}}
{{- end -}}
{{- if kindIs "map" .Values.githubConfigSecret -}}
{{- if not (or .Values.githubConfigSecret.github_token .Values.githubConfigSecret.github_app_id) -}}
{{- fail "At least one of githubConfigSecret.github_token or githubConfigSecret.github_app_id is required (or name an existing Secret: githubConfigSecret: <name>)" -}}
{{- end -}}
{{- if and .Values.githubConfigSecret.github_app_id (not (and .Values.githubConfigSecret.github_app_installation_id .Values.githubConfigSecret.github_app_private_key)) -}}
{{- fail "githubConfigSecret.github_app_id needs githubConfigSecret.github_app_installation_id and githubConfigSecret.github_app_private_key" -}}
{{- end -}}
{{- else if not .Values.githubConfigSecret -}}
{{- fail "githubConfigSecret is required" -}}
{{- end -}}
{{- if not (or (kindIs "invalid" .Values.minRunners) (kindIs "invalid" .Values.maxRunners)) -}}
{{- if gt (int .Values.minRunners) (int .Values.maxRunners) -}}
{{- fail "maxRunners has to be greater or equal to minRunners" -}}
{{- end -}}
{{- end -}}
{{- if and (eq (include "gha-rs.mode" .) "kubernetes") (not .Values.containerMode.kubernetesModeWorkVolumeClaim) -}}
{{- fail "containerMode.kubernetesModeWorkVolumeClaim is required when containerMode.type is kubernetes" -}}
{{- end -}}
{{- end -}}

{{/* Append the env vars of .add to .env whose names .env does not have yet. */}}
{{- define "gha-rs.mergeByName" -}}
{{- $names := list -}}
{{- range .have }}{{ $names = append $names .name }}{{ end -}}
{{- $out := .have -}}
{{- range .add }}{{ if not (has .name $names) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- toYaml (dict "items" $out) -}}
{{- end -}}

{{/* The runner pod template with containerMode and githubServerTLS applied (as ARC's chart renders it). */}}
{{- define "gha-rs.template" -}}
{{- $tpl := deepCopy (.Values.template | default dict) -}}
{{- $spec := $tpl.spec | default dict -}}
{{- $mode := include "gha-rs.mode" . -}}
{{- $tls := .Values.githubServerTLS | default dict -}}
{{- $runnerImage := "ghcr.io/actions/actions-runner:latest" -}}
{{- range ($spec.containers | default list) }}{{ if eq .name "runner" }}{{ $runnerImage = .image | default $runnerImage }}{{ end }}{{ end -}}
{{- $env := list -}}
{{- $mounts := list -}}
{{- $volumes := list -}}
{{- $inits := list -}}
{{- if eq $mode "dind" -}}
{{- $env = list (dict "name" "DOCKER_HOST" "value" "unix:///var/run/docker.sock") (dict "name" "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS" "value" "120") -}}
{{- $mounts = list (dict "name" "work" "mountPath" "/home/runner/_work") (dict "name" "dind-sock" "mountPath" "/var/run") -}}
{{- $volumes = list (dict "name" "work" "emptyDir" dict) (dict "name" "dind-sock" "emptyDir" dict) (dict "name" "dind-externals" "emptyDir" dict) -}}
{{- $dind := dict "name" "dind" "image" "docker:dind" "args" (list "dockerd" "--host=unix:///var/run/docker.sock" "--group=$(DOCKER_GROUP_GID)") "env" (list (dict "name" "DOCKER_GROUP_GID" "value" "123")) "securityContext" (dict "privileged" true) "volumeMounts" (list (dict "name" "work" "mountPath" "/home/runner/_work") (dict "name" "dind-sock" "mountPath" "/var/run") (dict "name" "dind-externals" "mountPath" "/home/runner/externals")) -}}
{{- $inits = list (dict "name" "init-dind-externals" "image" $runnerImage "command" (list "cp") "args" (list "-r" "/home/runner/externals/." "/home/runner/tmpDir/") "volumeMounts" (list (dict "name" "dind-externals" "mountPath" "/home/runner/tmpDir"))) -}}
{{- if semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version -}}
{{- $_ := set $dind "restartPolicy" "Always" -}}
{{- $_ := set $dind "startupProbe" (dict "exec" (dict "command" (list "docker" "info")) "periodSeconds" 5 "failureThreshold" 24) -}}
{{- $inits = append $inits $dind -}}
{{- else -}}
{{- $_ := set $spec "containers" (append ($spec.containers | default list) $dind) -}}
{{- end -}}
{{- else if hasPrefix "kubernetes" $mode -}}
{{- $hook := ternary "/home/runner/k8s-novolume/index.js" "/home/runner/k8s/index.js" (eq $mode "kubernetes-novolume") -}}
{{- $env = list (dict "name" "ACTIONS_RUNNER_CONTAINER_HOOKS" "value" $hook) (dict "name" "ACTIONS_RUNNER_POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) (dict "name" "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER" "value" "true") -}}
{{- if eq $mode "kubernetes" -}}
{{- $mounts = list (dict "name" "work" "mountPath" "/home/runner/_work") -}}
{{- $volumes = list (dict "name" "work" "ephemeral" (dict "volumeClaimTemplate" (dict "spec" .Values.containerMode.kubernetesModeWorkVolumeClaim))) -}}
{{- else -}}
{{- $env = append $env (dict "name" "ACTIONS_RUNNER_IMAGE" "value" $runnerImage) -}}
{{- end -}}
{{- end -}}
{{- with $tls.runnerMountPath -}}
{{- $ref := $tls.certificateFrom.configMapKeyRef -}}
{{- $env = append $env (dict "name" "NODE_EXTRA_CA_CERTS" "value" (printf "%s/%s" (trimSuffix "/" .) $ref.key)) -}}
{{- $env = append $env (dict "name" "RUNNER_UPDATE_CA_CERTS" "value" "1") -}}
{{- $mounts = append $mounts (dict "name" "github-server-tls-cert" "mountPath" (printf "%s/%s" (trimSuffix "/" .) $ref.key) "subPath" $ref.key) -}}
{{- $volumes = append $volumes (dict "name" "github-server-tls-cert" "configMap" (dict "name" $ref.name "items" (list (dict "key" $ref.key "path" $ref.key)))) -}}
{{- end -}}
{{- $containers := list -}}
{{- range ($spec.containers | default list) -}}
{{- $c := . -}}
{{- if eq .name "runner" -}}
{{- $_ := set $c "env" ((include "gha-rs.mergeByName" (dict "have" ($c.env | default list) "add" $env)) | fromYaml).items -}}
{{- $_ := set $c "volumeMounts" ((include "gha-rs.mergeByName" (dict "have" ($c.volumeMounts | default list) "add" $mounts)) | fromYaml).items -}}
{{- if not $c.env }}{{ $_ := unset $c "env" }}{{ end -}}
{{- if not $c.volumeMounts }}{{ $_ := unset $c "volumeMounts" }}{{ end -}}
{{- end -}}
{{- $containers = append $containers $c -}}
{{- end -}}
{{- $_ := set $spec "containers" $containers -}}
{{- $allInits := concat $inits ($spec.initContainers | default list) -}}
{{- if $allInits }}{{ $_ := set $spec "initContainers" $allInits }}{{ end -}}
{{- $allVolumes := ((include "gha-rs.mergeByName" (dict "have" ($spec.volumes | default list) "add" $volumes)) | fromYaml).items -}}
{{- if $allVolumes }}{{ $_ := set $spec "volumes" $allVolumes }}{{ end -}}
{{- if not $spec.restartPolicy }}{{ $_ := set $spec "restartPolicy" "Never" }}{{ end -}}
{{- if not $spec.serviceAccountName -}}
{{- $_ := set $spec "serviceAccountName" (ternary (include "gha-rs.kubeModeName" .) (include "gha-rs.noPermissionServiceAccountName" .) (hasPrefix "kubernetes" $mode)) -}}
{{- end -}}
{{- $_ := set $tpl "spec" $spec -}}
{{- toYaml $tpl -}}
{{- end -}}

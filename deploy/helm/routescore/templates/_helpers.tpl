{{/* Names, labels and shared pod fragments of the routescore chart. */}}

{{- define "routescore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "routescore.fullname" -}}
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

{{- define "routescore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "routescore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "routescore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "routescore.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "routescore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "routescore.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "routescore.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whole cores of a CPU quantity ("4", 4, "4000m"); fails on a fraction. */}}
{{- define "routescore.wholeCores" -}}
{{- $q := toString . -}}
{{- if hasSuffix "m" $q -}}
{{- $m := trimSuffix "m" $q | int -}}
{{- if or (ne (mod $m 1000) 0) (lt $m 1000) -}}
{{- fail (printf "resources.limits.cpu %s: give the server whole cores" $q) -}}
{{- end -}}
{{- div $m 1000 -}}
{{- else if regexMatch "^[0-9]+$" $q -}}
{{- $q -}}
{{- else -}}
{{- fail (printf "resources.limits.cpu %s: give the server whole cores" $q) -}}
{{- end -}}
{{- end -}}

{{/* The server's config file: values.config plus ports, threads and devices. */}}
{{- define "routescore.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) -}}
{{- $_ := set $cfg "metrics_listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics)) -}}
{{- $cores := int (include "routescore.wholeCores" .Values.resources.limits.cpu) -}}
{{- $cpuRouters := 0 -}}
{{- range $cfg.routers -}}
{{- if and (not (hasKey . "threads")) (eq (default "cpu" .backend) "cpu" "auto") -}}
{{- $cpuRouters = add1 $cpuRouters -}}
{{- end -}}
{{- end -}}
{{- $routers := list -}}
{{- range $cfg.routers -}}
{{- $r := deepCopy . -}}
{{- $backend := default "cpu" $r.backend -}}
{{- if and (not (hasKey $r "threads")) (eq $backend "cpu" "auto") -}}
{{- $_ := set $r "threads" (max 1 (div $cores $cpuRouters)) -}}
{{- end -}}
{{- if and $.Values.gpu.enabled (eq $backend "cuda" "auto") (not (hasKey $r "devices")) (not (hasKey $r "device")) -}}
{{- $_ := set $r "devices" (until (int $.Values.gpu.count)) -}}
{{- end -}}
{{- if and (eq $backend "cuda") (not $.Values.gpu.enabled) -}}
{{- fail (printf "router %s: backend cuda needs gpu.enabled" $r.name) -}}
{{- end -}}
{{- range (default (list) $r.devices) -}}
{{- if ge (int .) (int $.Values.gpu.count) -}}
{{- fail (printf "router %s: device %d, but the pod has gpu.count %d GPUs" $r.name (int .) (int $.Values.gpu.count)) -}}
{{- end -}}
{{- end -}}
{{- $routers = append $routers $r -}}
{{- end -}}
{{- $_ := set $cfg "routers" $routers -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* Resources with the GPU count added when gpu.enabled. */}}
{{- define "routescore.resources" -}}
{{- $res := deepCopy .resources -}}
{{- if .gpu.enabled -}}
{{- $req := default (dict) $res.requests -}}
{{- $lim := default (dict) $res.limits -}}
{{- $_ := set $req "nvidia.com/gpu" (int .gpu.count) -}}
{{- $_ := set $lim "nvidia.com/gpu" (int .gpu.count) -}}
{{- $_ := set $res "requests" $req -}}
{{- $_ := set $res "limits" $lim -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* Pod-level scheduling: node selection, GPU affinity and tolerations, runtime class. */}}
{{- define "routescore.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy .Values.affinity -}}
{{- if and .Values.gpu.enabled .Values.gpu.products -}}
{{- $term := dict "matchExpressions" (list (dict "key" .Values.gpu.productLabel "operator" "In" "values" .Values.gpu.products)) -}}
{{- $_ := set $affinity "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $term))) -}}
{{- end -}}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := .Values.tolerations -}}
{{- if .Values.gpu.enabled -}}
{{- $tolerations = concat .Values.tolerations .Values.gpu.tolerations -}}
{{- end -}}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and .Values.gpu.enabled .Values.gpu.runtimeClassName }}
runtimeClassName: {{ .Values.gpu.runtimeClassName }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "secrets-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "secrets-operator.fullname" -}}
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

{{- define "secrets-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "secrets-operator.labels" -}}
helm.sh/chart: {{ include "secrets-operator.chart" . }}
{{ include "secrets-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secrets-operator
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "secrets-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secrets-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secrets-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secrets-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "secrets-operator.leaseName" -}}
{{- default (include "secrets-operator.fullname" .) .Values.operator.leaseName }}
{{- end }}

{{/* The blueprints' Secret names, deduplicated: RBAC resourceNames. */}}
{{- define "secrets-operator.blueprintNames" -}}
{{- $names := list }}
{{- range .Values.operator.blueprints }}
{{- $names = append $names (index (splitList "/" .) 1) }}
{{- end }}
{{- toJson (uniq $names) }}
{{- end }}

{{/* The blueprints as `namespace/name`, deduplicated: the sources a copy may name. */}}
{{- define "secrets-operator.blueprintRefs" -}}
{{- toJson (uniq .Values.operator.blueprints) }}
{{- end }}

{{/* The user name the API server gives the operator's ServiceAccount. */}}
{{- define "secrets-operator.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "secrets-operator.serviceAccountName" .) }}
{{- end }}

{{/* The blueprints' home namespaces, deduplicated: where Events are recorded. */}}
{{- define "secrets-operator.blueprintNamespaces" -}}
{{- $namespaces := list }}
{{- range .Values.operator.blueprints }}
{{- $namespaces = append $namespaces (index (splitList "/" .) 0) }}
{{- end }}
{{- toJson (uniq $namespaces) }}
{{- end }}

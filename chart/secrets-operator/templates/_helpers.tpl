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

{{/*
The ServiceAccount the operator runs as, and the one RBAC and the admission policy name. Without
one to create, it must be named: falling back to the namespace's "default" ServiceAccount would
hand the operator's rights to every pod in the namespace that runs without a ServiceAccount.
*/}}
{{- define "secrets-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secrets-operator.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.create is false: set serviceAccount.name to the existing ServiceAccount the operator runs as" }}
{{- end }}
{{- end }}

{{- define "secrets-operator.leaseName" -}}
{{- default (include "secrets-operator.fullname" .) .Values.operator.leaseName }}
{{- end }}

{{/*
Every blueprint of operator.blueprints, normalised once: the rest of the chart reads only this.
An item is either "namespace/name" (a Secret copied under its own name) or an object with the
keys of docs/configuration.md; values.schema.json has already checked its shape. Each becomes
  {kind, namespace, name, source: "namespace/name", target, previous, include, exclude, selector}
where target is the name of every copy (targetName, else the source's name) and previous the
names its copies had before a rename (previousTargetNames, without the target, once each);
include and exclude are the blueprint's own namespace globs (null when absent: the global ones
apply), and selector whether it has a namespaceSelector of its own.
Refused here as the operator refuses them at start (settings.parse_blueprints): a ConfigMap copy
named kube-root-ca.crt (Kubernetes publishes it into every namespace); one blueprint
(kind and source) configured twice with different options (an identical repeat, e.g. "a/b" and
{source: a/b}, is listed once), and two blueprints of one kind whose copy names (targets and
previous names together) meet, since they would write the same objects.
Returns JSON {"items": [...]}: (include "secrets-operator.blueprints" . | fromJson).items
*/}}
{{- define "secrets-operator.blueprints" -}}
{{- $items := list }}
{{- $configured := dict }}
{{- $claimed := dict }}
{{- range .Values.operator.blueprints }}
{{- $item := kindIs "string" . | ternary (dict "source" .) . }}
{{- $parts := splitList "/" $item.source }}
{{- $kind := $item.kind | default "Secret" }}
{{- $name := index $parts 1 }}
{{- $target := $item.targetName | default $name }}
{{- $previous := without (uniq ($item.previousTargetNames | default list)) $target }}
{{- /* What makes two items the same blueprint with the same options, as the operator compares them. */}}
{{- $options := omit $item "kind" "previousTargetNames" "targetName" | merge (dict "kind" $kind "previousTargetNames" $previous "targetName" $target) | toJson }}
{{- $blueprint := printf "%s %s" $kind $item.source }}
{{- $earlier := get $configured $blueprint }}
{{- if and $earlier (ne $earlier $options) }}
{{- fail (printf "operator.blueprints: %s is configured twice with different options; configure each blueprint once" $blueprint) }}
{{- end }}
{{- if not $earlier }}
{{- $_ := set $configured $blueprint $options }}
{{- range $copyName := prepend $previous $target }}
{{- if and (eq $kind "ConfigMap") (eq $copyName "kube-root-ca.crt") }}
{{- fail (printf "operator.blueprints: ConfigMap %s: kube-root-ca.crt is published into every namespace by Kubernetes itself; a copy must never take that name" $item.source) }}
{{- end }}
{{- $key := printf "%s|%s" $kind $copyName }}
{{- with get $claimed $key }}
{{- fail (printf "operator.blueprints: %s blueprints %s and %s would both write copies named %q; a target or previous target name belongs to one blueprint of each kind" $kind . $item.source $copyName) }}
{{- end }}
{{- $_ := set $claimed $key $item.source }}
{{- end }}
{{- $items = append $items (dict "kind" $kind "namespace" (index $parts 0) "name" $name "source" $item.source "target" $target "previous" $previous "include" $item.includeNamespaces "exclude" $item.excludeNamespaces "selector" (hasKey $item "namespaceSelector")) }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $items) }}
{{- end }}

{{/*
The names RBAC must grant for one kind (`kind`): each blueprint's own name (its informer lists
and watches it by name at home), its target name and its previous target names (its copies,
watched by name across namespaces), deduplicated and sorted. JSON list; empty when no blueprint
is of that kind. Call with (dict "kind" "Secret" "root" $).
*/}}
{{- define "secrets-operator.resourceNames" -}}
{{- $names := list }}
{{- range (include "secrets-operator.blueprints" .root | fromJson).items }}
{{- if eq .kind $.kind }}
{{- $names = concat $names (list .name .target) .previous }}
{{- end }}
{{- end }}
{{- toJson (uniq $names | sortAlpha) }}
{{- end }}

{{/* The user name the API server gives the operator's ServiceAccount. */}}
{{- define "secrets-operator.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "secrets-operator.serviceAccountName" .) }}
{{- end }}

{{/* The blueprints' home namespaces (all kinds), deduplicated: where Events are recorded. */}}
{{- define "secrets-operator.blueprintNamespaces" -}}
{{- $namespaces := list }}
{{- range (include "secrets-operator.blueprints" . | fromJson).items }}
{{- $namespaces = append $namespaces .namespace }}
{{- end }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/*
Namespace globs (a list) as one anchored RE2 regular expression, for CEL's matches(): what the
operator's selectors.matches_any (Python's fnmatch.fnmatchcase) matches, whole names, case
sensitive. "*" is any run of characters, "?" any one, "[...]" and "[!...]" a set and its
complement, where a "]" right after "[" or "[!" belongs to the set and a "[" without its closing
"]" is a plain character (as fnmatch reads them); everything else is literal. An empty list
renders as "" (no namespace matches).
*/}}
{{- define "secrets-operator.globsRegex" -}}
{{- $alternatives := list }}
{{- range $glob := . }}
{{- $regex := "" }}
{{- range $token := regexFindAll `\[!\][^\]]*\]|\[![^\]]+\]|\[\][^\]]*\]|\[[^\]!][^\]]*\]|[\s\S]` $glob -1 }}
{{- if eq $token "*" }}
{{- $regex = printf "%s.*" $regex }}
{{- else if eq $token "?" }}
{{- $regex = printf "%s." $regex }}
{{- else if and (gt (len $token) 2) (hasPrefix "[" $token) }}
{{- $set := trimSuffix "]" (trimPrefix "[" $token) }}
{{- $negated := hasPrefix "!" $set }}
{{- if $negated }}{{ $set = trimPrefix "!" $set }}{{ end }}
{{- $set = $set | replace `\` `\\` | replace `[` `\[` | replace `]` `\]` | replace `^` `\^` }}
{{- $regex = printf "%s[%s%s]" $regex ($negated | ternary "^" "") $set }}
{{- else }}
{{- $regex = printf "%s%s" $regex (regexQuoteMeta $token) }}
{{- end }}
{{- end }}
{{- $alternatives = append $alternatives $regex }}
{{- end }}
{{- if $alternatives }}{{ printf "^(?s:%s)$" (join "|" $alternatives) }}{{ end }}
{{- end }}

{{/*
The global namespace globs of one setting (operator.includeNamespaces or excludeNamespaces) as
the operator reads them: joined with "," into its variable and split again, each part trimmed,
empty parts dropped (blueprint_config.split_list). JSON list. Call with the list.
*/}}
{{- define "secrets-operator.globalGlobs" -}}
{{- $globs := list }}
{{- range $part := splitList "," (join "," .) }}
{{- if trim $part }}{{ $globs = append $globs (trim $part) }}{{ end }}
{{- end }}
{{- toJson $globs }}
{{- end }}

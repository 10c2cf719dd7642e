{{- define "kafka-iggy-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-iggy-operator.labels" -}}
app.kubernetes.io/name: kafka-iggy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kafka-iggy-operator.selector" -}}
app.kubernetes.io/name: kafka-iggy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-iggy-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kafka-iggy-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

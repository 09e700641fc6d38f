{{/* Name of the release's objects: the release name, plus the chart's unless it contains it. */}}
{{- define "fc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The migration Job's name: a Job's name goes into a label of its pods, at most 63 characters. */}}
{{- define "fc.migrationJobName" -}}
{{- include "fc.fullname" . | trunc 55 | trimSuffix "-" -}}-migrate
{{- end -}}

{{/* The Kafka security protocol of the consumer: as set, or from SASL and TLS; "" is PLAINTEXT. */}}
{{- define "fc.kafkaProtocol" -}}
{{- $kafka := .Values.kafka -}}
{{- if $kafka.securityProtocol -}}{{ $kafka.securityProtocol }}
{{- else if and $kafka.sasl.mechanism $kafka.tls.enabled -}}SASL_SSL
{{- else if $kafka.sasl.mechanism -}}SASL_PLAINTEXT
{{- else if $kafka.tls.enabled -}}SSL
{{- end -}}
{{- end -}}

{{- define "fc.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Pods of the migration Job: the release's, but another name, so that no
selector of the Deployment's pods (Service, PodDisruptionBudget, topology
spread, NetworkPolicy) counts them. The Job's labels differ rather than the
selectors, since a Deployment's selector cannot change.
*/}}
{{- define "fc.migrationSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-migration
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: migration
{{- end -}}

{{/*
A value of a free-form map as the binary reads it. Helm's values pass
through JSON, so every number is a float64, which prints as 5.24288e+07;
JSON's formatting prints it as written, fractions included.
*/}}
{{- define "fc.scalar" -}}
{{- if kindIs "float64" . }}{{ toJson . }}{{ else }}{{ . }}{{ end }}
{{- end -}}

{{- define "fc.labels" -}}
{{ include "fc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fc.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Replicas may not exceed the partitions of a topic divided among the
consumers of a pod (config consumer.workers): more would idle.
*/}}
{{- define "fc.maxReplicas" -}}
{{- $max := .max | int -}}
{{- $workers := index .root.Values.config "consumer.workers" | default 1 | int -}}
{{- $parts := .root.Values.topics.partitions | int -}}
{{- $useful := div (add $parts (sub $workers 1)) $workers | int -}}
{{- if gt $max $useful -}}{{ $useful }}{{- else -}}{{ $max }}{{- end -}}
{{- end -}}

{{/* An autoscaler's minimum, at most its capped maximum (the API server refuses min > max). */}}
{{- define "fc.minReplicas" -}}
{{- $min := .min | int -}}
{{- $max := include "fc.maxReplicas" (dict "root" .root "max" .max) | int -}}
{{- if gt $min $max -}}{{ $max }}{{- else -}}{{ $min }}{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod of the chart. */}}
{{- define "fc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "fc.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
PostgreSQL connection of a container: a libpq URL read from a mounted
Secret key (FEEDBACK_DATABASE_URL_FILE), or libpq's PG* variables with the
password, and the host unless database.host names it, from the Secret. TLS
settings apply to both; a URL's own parameters win over them.
Arguments: root, secret, urlKey, user, passwordKey.
*/}}
{{- define "fc.databaseEnv" -}}
{{- $db := .root.Values.database -}}
{{- if .urlKey }}
- name: FEEDBACK_DATABASE_URL_FILE
  value: /var/run/secrets/feedback/database/{{ .urlKey }}
{{- else }}
- name: PGHOST
{{- if $db.host }}
  value: {{ $db.host | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $db.hostKey }}
{{- end }}
- name: PGPORT
  value: {{ $db.port | int64 | quote }}
- name: PGDATABASE
  value: {{ $db.name | quote }}
- name: PGUSER
  value: {{ .user | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .passwordKey }}
{{- end }}
- name: PGSSLMODE
  value: {{ $db.sslmode | quote }}
{{- if $db.sslRootCert.secretName }}
- name: PGSSLROOTCERT
  value: /var/run/secrets/feedback/database-ca/{{ $db.sslRootCert.key }}
{{- else if has $db.sslmode (list "verify-ca" "verify-full") }}
{{- /* libpq's default, ~/.postgresql/root.crt, is not in the image: verify
against the public CAs of its ca-certificates. Not for the weaker modes,
which a root certificate would turn into verify-ca. */}}
- name: PGSSLROOTCERT
  value: /etc/ssl/certs/ca-certificates.crt
{{- end }}
- name: FEEDBACK_DATABASE_SCHEMA
  value: {{ $db.schema | quote }}
{{- end -}}

{{- define "fc.databaseVolumeMounts" -}}
{{- if .urlKey }}
- name: database
  mountPath: /var/run/secrets/feedback/database
  readOnly: true
{{- end }}
{{- if .root.Values.database.sslRootCert.secretName }}
- name: database-ca
  mountPath: /var/run/secrets/feedback/database-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "fc.databaseVolumes" -}}
{{- if .urlKey }}
- name: database
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - key: {{ .urlKey }}
        path: {{ .urlKey }}
{{- end }}
{{- if .root.Values.database.sslRootCert.secretName }}
- name: database-ca
  secret:
    secretName: {{ .root.Values.database.sslRootCert.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* Names ---------------------------------------------------------------------------------------------- */}}

{{- define "admission.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "admission.fullname" -}}
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

{{- define "admission.serviceAccountName" -}}
{{- default (include "admission.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt, whichever mode made it. */}}
{{- define "admission.tlsSecretName" -}}
{{- printf "%s-tls" (include "admission.fullname" .) -}}
{{- end -}}

{{/* Managed TLS: the Secret the server writes (not the chart: Helm must never own or delete it) and its Lease. */}}
{{- define "admission.managedSecretName" -}}
{{- printf "%s-managed-tls" (include "admission.fullname" .) -}}
{{- end -}}
{{- define "admission.managedLeaseName" -}}
{{- printf "%s-tls-writer" (include "admission.fullname" .) -}}
{{- end -}}

{{/* The Secret whose ca.crt / ca-bundle.crt names the CA that the server's certificate chains to. */}}
{{- define "admission.caSecretName" -}}
{{- if eq .Values.tls.mode "managed" -}}{{ include "admission.managedSecretName" . }}{{- else -}}{{ include "admission.tlsSecretName" . }}{{- end -}}
{{- end -}}

{{/* Whether the pod talks to the API server at all (cluster reads, or managed TLS): then it gets a token. */}}
{{- define "admission.needsToken" -}}
{{- if or (include "admission.clusterReads" .) (eq .Values.tls.mode "managed") -}}true{{- end -}}
{{- end -}}

{{/* The DNS name the API server calls: <service>.<namespace>.svc */}}
{{- define "admission.serviceHost" -}}
{{- printf "%s.%s.svc" (include "admission.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Every name the serving certificate carries (a YAML list): the Service's short and full DNS names. */}}
{{- define "admission.serviceNames" -}}
{{- $full := include "admission.fullname" . -}}
{{- $host := include "admission.serviceHost" . -}}
{{- toYaml (list $host $full (printf "%s.%s" $full .Release.Namespace) (printf "%s.cluster.local" $host)) -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------------------- */}}

{{- define "admission.selectorLabels" -}}
app.kubernetes.io/name: {{ include "admission.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "admission.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "admission.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: admission
{{- end -}}

{{/* Image: a pinned tag (appVersion by default), never latest, with an optional digest. */}}
{{- define "admission.image" -}}
{{- $tag := toString (default .Chart.AppVersion .Values.image.tag) -}}
{{- if eq (lower $tag) "latest" -}}
{{- fail "image.tag: `latest` is not a pinned tag; give a version (the default is the chart's appVersion)" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- with .Values.image.digest -}}@{{ . }}{{- end -}}
{{- end -}}

{{/* Whether the server reads from the cluster at all (then it needs a token and RBAC). */}}
{{- define "admission.clusterReads" -}}
{{- if or .Values.clusterReads.limitRanges .Values.clusterReads.pullSecrets .Values.clusterReads.owners .Values.clusterReads.serviceAccounts -}}true{{- end -}}
{{- end -}}

{{/* Where things are mounted in the pod. */}}
{{- define "admission.policyDir" -}}/etc/admission/policy{{- end -}}
{{- define "admission.tlsDir" -}}/etc/admission/tls{{- end -}}
{{- define "admission.dockerConfigDir" -}}/etc/admission/registry{{- end -}}

{{/* The restricted Pod Security profile, for every container of the chart. */}}
{{- define "admission.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "admission.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Checks of value combinations that a JSON schema cannot express. */}}
{{- define "admission.validate" -}}
{{- if ge (float64 .Values.server.deadlineSeconds) (float64 .Values.timeoutSeconds) -}}
{{- fail (printf "server.deadlineSeconds (%v) must be under timeoutSeconds (%v): the API server gives up at timeoutSeconds" .Values.server.deadlineSeconds .Values.timeoutSeconds) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and (eq .Values.tls.mode "managed") (ge (int .Values.tls.managed.certValidityDays) (int .Values.tls.managed.caValidityDays)) -}}
{{- fail (printf "tls.managed.certValidityDays (%v) must be under tls.managed.caValidityDays (%v): a serving certificate never outlives its CA" .Values.tls.managed.certValidityDays .Values.tls.managed.caValidityDays) -}}
{{- end -}}
{{- end -}}

{{/* The keys of images.verify: /etc/admission/keys, a sibling of the policy folder (the policy says ../keys/x.pub). */}}
{{- define "admission.keysDir" -}}/etc/admission/keys{{- end -}}

{{/* Whether any verify keys are mounted. */}}
{{- define "admission.hasKeys" -}}
{{- if or .Values.verifyKeys.keys .Values.verifyKeys.existingConfigMap .Values.verifyKeys.existingSecret }}true{{- end -}}
{{- end -}}

{{/* The keys volume (name "keys"); `inline` is the ConfigMap that holds values.verifyKeys.keys. */}}
{{- define "admission.keysVolume" -}}
- name: keys
  {{- if .root.Values.verifyKeys.existingSecret }}
  secret:
    secretName: {{ .root.Values.verifyKeys.existingSecret }}
  {{- else if .root.Values.verifyKeys.existingConfigMap }}
  configMap:
    name: {{ .root.Values.verifyKeys.existingConfigMap }}
  {{- else }}
  configMap:
    name: {{ .inline }}
  {{- end }}
{{- end -}}

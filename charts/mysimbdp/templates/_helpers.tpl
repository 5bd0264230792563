{{/*
Names, labels and the pieces both operator Deployments share.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "mysimbdp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name: the release name, with the chart name unless it is in it. */}}
{{- define "mysimbdp.fullname" -}}
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

{{/* Name of the monitor's Deployment and lease (the full name leaves room for the suffix). */}}
{{- define "mysimbdp.monitorName" -}}
{{- printf "%s-monitor" (include "mysimbdp.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The tenant roles, named after the release (cluster-wide, so two releases never collide). */}}
{{- define "mysimbdp.ownerRole" -}}
{{- printf "%s-tenant-owner" (include "mysimbdp.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}
{{- define "mysimbdp.viewerRole" -}}
{{- printf "%s-tenant-viewer" (include "mysimbdp.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}
{{- define "mysimbdp.adminRole" -}}
{{- printf "%s-platform-admin" (include "mysimbdp.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "mysimbdp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mysimbdp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mysimbdp
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select this release's pods. */}}
{{- define "mysimbdp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mysimbdp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "mysimbdp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mysimbdp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "mysimbdp.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if hasPrefix "sha256:" $tag }}
{{- printf "%s@%s" .Values.image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (trimPrefix "@" $tag) }}
{{- end }}
{{- end }}

{{/* The metrics sidecar image. */}}
{{- define "mysimbdp.sidecarImage" -}}
{{- $tag := default .Chart.AppVersion .Values.stream.sidecarImage.tag }}
{{- if hasPrefix "sha256:" $tag }}
{{- printf "%s@%s" .Values.stream.sidecarImage.repository $tag }}
{{- else }}
{{- printf "%s:%s" .Values.stream.sidecarImage.repository (trimPrefix "@" $tag) }}
{{- end }}
{{- end }}

{{/* Whether the staging store is a file:// folder (a volume) rather than S3. */}}
{{- define "mysimbdp.stagingIsFile" -}}
{{- if hasPrefix "file://" .Values.staging.url }}true{{ end }}
{{- end }}

{{/* The folder of a file:// staging URL. */}}
{{- define "mysimbdp.stagingPath" -}}
{{- trimPrefix "file://" .Values.staging.url }}
{{- end }}

{{/* The claim that holds a file:// staging store, if any. */}}
{{- define "mysimbdp.stagingClaim" -}}
{{- if .Values.staging.persistence.existingClaim }}
{{- .Values.staging.persistence.existingClaim }}
{{- else if .Values.staging.persistence.create }}
{{- printf "%s-staging" (include "mysimbdp.fullname" .) }}
{{- end }}
{{- end }}

{{/* Rules across values that the schema cannot state; a broken one stops the install. */}}
{{- define "mysimbdp.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas: %d runs %d operators at once; set leaderElection.enabled: true so that one of them works at a time" (int .Values.replicas) (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.monitor.separate (gt (int .Values.monitor.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "monitor.replicas: %d runs %d monitors at once; set leaderElection.enabled: true" (int .Values.monitor.replicas) (int .Values.monitor.replicas)) }}
{{- end }}
{{- if and (eq (include "mysimbdp.stagingIsFile" .) "true") (eq (include "mysimbdp.stagingPath" .) "/") }}
{{- fail "staging.url: file:/// is the root folder; name a folder, e.g. file:///var/lib/mysimbdp/staging" }}
{{- end }}
{{- if and (not (eq (include "mysimbdp.stagingIsFile" .) "true")) .Values.staging.tenantClaim }}
{{- fail (printf "staging.tenantClaim: %s is only for a file:// staging.url; an s3:// store needs no volume" .Values.staging.tenantClaim) }}
{{- end }}
{{- end }}

{{/*
The operator pod template. Arguments: a dict with
  root        the chart's top-level context
  component   app.kubernetes.io/component of the pods
  controllers the value of --controllers
  lease       the leader election lease's name
  resources   the container's resources
  staging     whether the pod mounts the staging claim (the monitor gets an empty folder)
*/}}
{{- define "mysimbdp.podTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $isFile := eq (include "mysimbdp.stagingIsFile" $root) "true" }}
{{- $claim := include "mysimbdp.stagingClaim" $root -}}
metadata:
  labels:
    {{- include "mysimbdp.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    app.kubernetes.io/part-of: mysimbdp
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "mysimbdp.serviceAccountName" $root }}
  automountServiceAccountToken: true
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
    {{- end }}
  {{- end }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  # The leader gives its lease up on SIGTERM; a few seconds are enough.
  terminationGracePeriodSeconds: 30
  containers:
    - name: operator
      image: {{ include "mysimbdp.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      command: ["mysimbdp-operator"]
      args:
        - --controllers={{ .controllers }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: RUST_LOG
          value: {{ $values.logging.level | quote }}
        - name: MYSIMBDP_LOG_FORMAT
          value: {{ $values.logging.format | quote }}
        - name: MYSIMBDP_METRICS_ADDR
          value: "0.0.0.0:{{ int $values.metrics.port }}"
        - name: MYSIMBDP_LEADER_ELECTION
          value: {{ $values.leaderElection.enabled | quote }}
        - name: MYSIMBDP_LEADER_ELECTION_LEASE_NAME
          value: {{ .lease | quote }}
        - name: MYSIMBDP_LEADER_ELECTION_NAMESPACE
          value: {{ $root.Release.Namespace | quote }}
        - name: MYSIMBDP_LEADER_ELECTION_LEASE_DURATION
          value: {{ $values.leaderElection.leaseDuration | quote }}
        - name: MYSIMBDP_LEADER_ELECTION_RENEW_DEADLINE
          value: {{ $values.leaderElection.renewDeadline | quote }}
        - name: MYSIMBDP_LEADER_ELECTION_RETRY_PERIOD
          value: {{ $values.leaderElection.retryPeriod | quote }}
        - name: MYSIMBDP_KAFKA_BOOTSTRAP
          value: {{ $values.kafka.bootstrap | quote }}
        {{- with $values.kafka.appBootstrap }}
        - name: MYSIMBDP_APP_KAFKA_BOOTSTRAP
          value: {{ . | quote }}
        {{- end }}
        - name: MYSIMBDP_KAFKA_SECURITY_PROTOCOL
          value: {{ $values.kafka.securityProtocol | quote }}
        - name: MYSIMBDP_KAFKA_ADMIN_USER
          value: {{ $values.kafka.adminUser | quote }}
        - name: MYSIMBDP_KAFKA_ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ $values.adminCredentials.secretName }}
              key: {{ $values.adminCredentials.keys.kafkaPassword }}
        - name: MYSIMBDP_COREDMS_URL
          value: {{ $values.coredms.url | quote }}
        {{- with $values.coredms.appUrl }}
        - name: MYSIMBDP_APP_COREDMS_URL
          value: {{ . | quote }}
        {{- end }}
        - name: MYSIMBDP_COREDMS_BACKEND
          value: {{ $values.coredms.backend | quote }}
        - name: MYSIMBDP_COREDMS_ADMIN_USER
          value: {{ $values.coredms.adminUser | quote }}
        - name: MYSIMBDP_COREDMS_ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ $values.adminCredentials.secretName }}
              key: {{ $values.adminCredentials.keys.coredmsPassword }}
        {{- if eq $values.coredms.backend "ferretdb-postgres" }}
        - name: MYSIMBDP_POSTGRES_URL
          valueFrom:
            secretKeyRef:
              name: {{ $values.adminCredentials.secretName }}
              key: {{ $values.adminCredentials.keys.postgresUrl }}
        {{- end }}
        - name: MYSIMBDP_COREDMS_AUTH_MECHANISM
          value: {{ $values.coredms.authMechanism | quote }}
        - name: MYSIMBDP_COREDMS_AUTH_SOURCE
          value: {{ $values.coredms.authSource | quote }}
        - name: MYSIMBDP_PLATFORM_DATABASE
          value: {{ $values.coredms.platformDatabase | quote }}
        - name: MYSIMBDP_STAGING_URL
          value: {{ $values.staging.url | quote }}
        {{- if not $isFile }}
        {{- with $values.staging.s3.region }}
        - name: AWS_REGION
          value: {{ . | quote }}
        {{- end }}
        {{- with $values.staging.s3.endpoint }}
        - name: AWS_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        {{- if $values.staging.s3.allowHttp }}
        - name: AWS_ALLOW_HTTP
          value: "true"
        {{- end }}
        {{- with $values.staging.s3.appEndpoint }}
        - name: MYSIMBDP_APP_STAGING_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        {{- with $values.staging.s3.credentialsSecret }}
        - name: AWS_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: AWS_ACCESS_KEY_ID
        - name: AWS_SECRET_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: AWS_SECRET_ACCESS_KEY
        {{- end }}
        {{- end }}
        - name: MYSIMBDP_TENANT_MAX_CPU
          value: {{ $values.tenantLimits.maxCpu | toString | quote }}
        - name: MYSIMBDP_TENANT_MAX_MEMORY
          value: {{ $values.tenantLimits.maxMemory | quote }}
        - name: MYSIMBDP_TENANT_MAX_PARTITIONS
          value: {{ int64 $values.tenantLimits.maxPartitions | toString | quote }}
        - name: MYSIMBDP_TENANT_MAX_STORAGE
          value: {{ $values.tenantLimits.maxStorage | quote }}
        - name: MYSIMBDP_APP_DEFAULT_CPU
          value: {{ $values.tenantLimits.appDefaultCpu | toString | quote }}
        - name: MYSIMBDP_APP_DEFAULT_MEMORY
          value: {{ $values.tenantLimits.appDefaultMemory | quote }}
        {{- with $values.tenantLimits.appEgress }}
        - name: MYSIMBDP_APP_EGRESS
          value: {{ join "," . | quote }}
        {{- end }}
        - name: MYSIMBDP_RUNTIME
          value: {{ $values.runtime | quote }}
        - name: MYSIMBDP_RUNS_DIR
          value: /var/lib/mysimbdp/runs
        - name: MYSIMBDP_BATCH_POLL_INTERVAL
          value: {{ $values.batch.pollInterval | quote }}
        - name: MYSIMBDP_MAX_CONCURRENT_RUNS
          value: {{ int64 $values.batch.maxConcurrentRuns | toString | quote }}
        {{- if and $isFile $values.staging.tenantClaim }}
        - name: MYSIMBDP_KUBERNETES_STAGING_CLAIM
          value: {{ $values.staging.tenantClaim | quote }}
        - name: MYSIMBDP_KUBERNETES_STAGING_PATH
          value: {{ include "mysimbdp.stagingPath" $root | quote }}
        {{- end }}
        {{- with $values.batch.runPodAnnotations }}
        - name: MYSIMBDP_RUN_POD_ANNOTATIONS
          value: {{ $pairs := list }}{{ range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%s" $k $v) }}{{ end }}{{ join "," $pairs | quote }}
        {{- end }}
        {{- with $values.apps.nodeSelector }}
        - name: MYSIMBDP_APP_NODE_SELECTOR
          value: {{ $pairs := list }}{{ range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%s" $k $v) }}{{ end }}{{ join "," $pairs | quote }}
        {{- end }}
        {{- with $values.apps.tolerations }}
        - name: MYSIMBDP_APP_TOLERATIONS
          value: {{ join "," . | quote }}
        {{- end }}
        {{- with $values.apps.imagePullPolicy }}
        - name: MYSIMBDP_APP_IMAGE_PULL_POLICY
          value: {{ . | quote }}
        {{- end }}
        {{- if $values.tenantApi.enabled }}
        - name: MYSIMBDP_TENANT_API_ADDR
          value: "0.0.0.0:{{ int $values.tenantApi.port }}"
        - name: MYSIMBDP_TENANT_API_CERT
          value: /etc/mysimbdp/tenant-api/tls.crt
        - name: MYSIMBDP_TENANT_API_KEY
          value: /etc/mysimbdp/tenant-api/tls.key
        {{- end }}
        - name: MYSIMBDP_TENANT_OWNER_ROLE
          value: {{ include "mysimbdp.ownerRole" $root | quote }}
        - name: MYSIMBDP_TENANT_VIEWER_ROLE
          value: {{ include "mysimbdp.viewerRole" $root | quote }}
        - name: MYSIMBDP_SIDECAR_IMAGE
          value: {{ include "mysimbdp.sidecarImage" $root | quote }}
        - name: MYSIMBDP_STREAM_RESYNC
          value: {{ $values.stream.resync | quote }}
        - name: MYSIMBDP_MONITOR_TICK
          value: {{ $values.stream.monitorTick | quote }}
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ int $values.metrics.port }}
          protocol: TCP
        {{- if $values.tenantApi.enabled }}
        - name: tenant-api
          containerPort: {{ int $values.tenantApi.port }}
          protocol: TCP
        {{- end }}
      # Connecting to Kafka and coredms comes before the endpoints answer.
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 5
        failureThreshold: 30
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      # A replica waiting for the lease answers too: it is ready to take over.
      readinessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
      {{- with .resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: runs
          mountPath: /var/lib/mysimbdp/runs
        {{- if $values.tenantApi.enabled }}
        - name: tenant-api-tls
          mountPath: /etc/mysimbdp/tenant-api
          readOnly: true
        {{- end }}
        {{- if $isFile }}
        - name: staging
          mountPath: {{ include "mysimbdp.stagingPath" $root }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {}
    - name: runs
      emptyDir: {}
    {{- if $values.tenantApi.enabled }}
    - name: tenant-api-tls
      secret:
        secretName: {{ include "mysimbdp.fullname" $root }}-tenant-api-tls
    {{- end }}
    {{- if $isFile }}
    - name: staging
      {{- if and .staging $claim }}
      persistentVolumeClaim:
        claimName: {{ $claim }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $values.affinity }}
  affinity:
    {{- toYaml $values.affinity | nindent 4 }}
  {{- else }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "mysimbdp.selectorLabels" $root | nindent 16 }}
                app.kubernetes.io/component: {{ .component }}
  {{- end }}
{{- end }}

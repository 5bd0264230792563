# shellcheck shell=bash
# Local Apache Kafka of the e2e stack: one KRaft node (broker and controller in one JVM) on
# loopback, with SCRAM-SHA-512 authentication and the standard KRaft authorizer, so tenant
# isolation through SCRAM users and ACLs can be tested against a real broker.
#
# Sourced after lib.sh; defines functions only:
#   kafka_build   resolve the broker and its tools from Maven Central into the cache
#   kafka_up      format once, start, and wait until the broker answers the admin over SCRAM
#   kafka_down    stop the broker (state is kept)
#   kafka_status  status_row lines
#   kafka_env     `export` lines for clients and tests
#   kafka_cli     run a Kafka tool class, e.g. kafka_cli org.apache.kafka.tools.TopicCommand --list ...
# Run directly: bash e2e/stack/kafka.sh up|down|status|env|build
#
# Security layout:
#   CLIENT      127.0.0.1:$MYSIMBDP_KAFKA_PORT            SASL_PLAINTEXT, SCRAM-SHA-512 only.
#   CONTROLLER  127.0.0.1:$MYSIMBDP_KAFKA_CONTROLLER_PORT SASL_PLAINTEXT, PLAIN only, one user.
#   INTERNAL    127.0.0.1:$MYSIMBDP_KAFKA_INTERNAL_PORT   SASL_PLAINTEXT, PLAIN only, the same user:
#               the inter-broker listener, and the way the stack restores the admin's SCRAM
#               credential when the broker lost it (see _kafka_assert_admin).
#   CLIENT_SSL  127.0.0.1:$MYSIMBDP_KAFKA_SSL_PORT        SASL_SSL, SCRAM-SHA-512 only: CLIENT over TLS,
#               with a certificate for 127.0.0.1, localhost and the node's bridge address, signed
#               by the stack's CA (tls.sh).
# A PLAINTEXT controller listener would make every request on it User:ANONYMOUS, and the
# broker's own calls to the controller (registration, heartbeats) need CLUSTER_ACTION, so
# ANONYMOUS would have to be a super user: any local process could then alter the cluster
# through the controller port. SCRAM cannot be used there (its credentials live in the
# metadata log the controller is serving), so the controller listener uses PLAIN with a static
# JAAS user `controller`, and super.users names only User:admin and User:controller. The
# CLIENT listener has no unauthenticated path at all: a client that does not complete the
# SCRAM exchange is disconnected, so ANONYMOUS never appears and gets nothing.

# The stack's CA and certificates, also when this file is sourced without stack.sh (tests do).
declare -F tls_server_cert >/dev/null || . "$STACK_DIR/tls.sh"

KAFKA_ADMIN_USER="admin"
KAFKA_CONTROLLER_USER="controller"

_kafka_home() { printf '%s/kafka-%s\n' "$MYSIMBDP_CACHE" "$KAFKA_VERSION"; }
_kafka_state() { printf '%s/kafka\n' "$MYSIMBDP_STATE"; }
_kafka_log() { printf '%s/kafka.log\n' "$LOG_DIR"; }

_kafka_java() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "java is not installed (Kafka needs a JDK 17 or newer; on Debian: apt-get install -y openjdk-17-jre-headless)"
  fi
}

# _kafka_secret NAME: prints the secret kept in $MYSIMBDP_STATE/secrets/NAME, generating it
# on first use. Hex only, so it can be embedded in JAAS strings and --add-scram unquoted.
_kafka_secret() {
  local dir=$MYSIMBDP_STATE/secrets
  local file=$dir/$1
  if [ ! -s "$file" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
    (umask 077 && openssl rand -hex 24 >"$file.new.$$") || die "cannot generate secret $file"
    # -n: a concurrent `up` that got there first wins, and both then read the same value.
    mv -n "$file.new.$$" "$file"
    rm -f "$file.new.$$"
  fi
  chmod 600 "$file"
  cat "$file"
}

# Builder for cached_build: resolves the runtime classpath into <dir>/libs.
_kafka_builder() {
  local out=$1
  command -v mvn >/dev/null 2>&1 || {
    echo "maven (mvn) is not installed; on Debian: apt-get install -y maven"
    return 1
  }
  cp "$STACK_DIR/kafka-pom.xml" "$out/pom.xml" || return 1
  # Run inside the partial dir so Maven's working files never land in the repo.
  (cd "$out" && mvn -B -q -Dstyle.color=never -Dkafka.version="$KAFKA_VERSION" \
    -Dscala.binary.version="$KAFKA_SCALA" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out/libs") || return 1
  rm -f "$out/pom.xml"
  local jar
  for jar in "kafka_$KAFKA_SCALA-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" \
    "log4j-slf4j-impl-"*.jar; do
    # shellcheck disable=SC2086 # the glob is meant to expand
    ls "$out/libs/"$jar >/dev/null 2>&1 || {
      echo "expected jar $jar is missing from $out/libs"
      return 1
    }
  done
  # Smoke test: the classpath loads the storage tool (Scala and Java parts both).
  "$(_kafka_java)" -cp "$out/libs/*" -Dlog4j2.configurationFile="$STACK_DIR/kafka-log4j2.properties" \
    -Dmysimbdp.log.level=WARN kafka.tools.StorageTool random-uuid || return 1
  printf '%s\n' "$KAFKA_VERSION" >"$out/VERSION"
}

kafka_build() {
  cached_build kafka "$KAFKA_VERSION" _kafka_builder
}

# kafka_cli CLASS ARGS...: runs a Kafka tool class on the cached classpath with a small,
# quickly starting JVM. Tool logging is WARN and goes to stderr.
kafka_cli() {
  local home
  home=$(_kafka_home)
  [ -f "$home/.complete" ] || die "Kafka $KAFKA_VERSION is not built; run kafka_build (or: bash $STACK_DIR/kafka.sh build)"
  [ $# -ge 1 ] || die "usage: kafka_cli CLASS [ARGS...]"
  local class=$1
  shift
  "$(_kafka_java)" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK_DIR/kafka-log4j2.properties" -Dmysimbdp.log.level=WARN \
    -cp "$home/libs/*" "$class" "$@"
}

# Writes server.properties and the client property files. Rewritten on every `up`, so a
# changed port takes effect; nothing in it is part of the formatted state (the quorum is
# static, so the controller address is not recorded in the metadata log).
_kafka_write_config() {
  local st=$1 admin_pw=$2 ctl_pw=$3 cert_fingerprint=$4
  local client=127.0.0.1:$MYSIMBDP_KAFKA_PORT controller=127.0.0.1:$MYSIMBDP_KAFKA_CONTROLLER_PORT
  local internal=127.0.0.1:$MYSIMBDP_KAFKA_INTERNAL_PORT client_ssl=127.0.0.1:$MYSIMBDP_KAFKA_SSL_PORT
  # PODS: the real node's pods (node.sh) reach the broker at the node's bridge address, which
  # it advertises to them; SCRAM-SHA-512 like CLIENT. There once the bridge is (stack.sh makes
  # it before Kafka starts, and restarts a broker that began without it).
  local pods= pods_map= pods_sasl=
  if ip -4 -o addr show 2>/dev/null | grep -F " $MYSIMBDP_NODE_IP/" >/dev/null; then
    pods=",PODS://$MYSIMBDP_NODE_IP:$MYSIMBDP_KAFKA_POD_PORT"
    pods_map=",PODS:SASL_PLAINTEXT"
    pods_sasl="listener.name.pods.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.pods.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  (
    umask 077
    cat >"$st/server.properties.new" <<EOF
# Generated by e2e/stack/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$controller
log.dirs=$st/data

listeners=CLIENT://$client,CONTROLLER://$controller,INTERNAL://$internal,CLIENT_SSL://$client_ssl$pods
advertised.listeners=CLIENT://$client,INTERNAL://$internal,CLIENT_SSL://$client_ssl$pods
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CLIENT_SSL:SASL_SSL$pods_map
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL

sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_ADMIN_USER" password="$admin_pw";
listener.name.internal.sasl.enabled.mechanisms=PLAIN
listener.name.internal.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$KAFKA_CONTROLLER_USER" password="$ctl_pw" user_$KAFKA_CONTROLLER_USER="$ctl_pw";
listener.name.client_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_ADMIN_USER" password="$admin_pw";
# The broker's key and certificate (PEM, unencrypted PKCS#8 key), fingerprint $cert_fingerprint;
# a new certificate changes this file, so the next start restarts the broker (see kafka_up).
listener.name.client_ssl.ssl.keystore.type=PEM
listener.name.client_ssl.ssl.keystore.location=$st/tls/broker.pem
listener.name.client_ssl.ssl.client.auth=none
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$KAFKA_CONTROLLER_USER" password="$ctl_pw" user_$KAFKA_CONTROLLER_USER="$ctl_pw";
$pods_sasl

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KAFKA_ADMIN_USER;User:$KAFKA_CONTROLLER_USER

# One node: every internal topic has one replica; topics are created explicitly only.
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
# Frequent metadata snapshots: a restart then loads the SCRAM users from a snapshot rather than
# replaying their whole history (see _kafka_assert_admin).
metadata.log.max.snapshot.interval.ms=60000
EOF
    mv "$st/server.properties.new" "$st/server.properties"

    cat >"$st/admin.properties.new" <<EOF
# Client settings of the platform admin for Kafka's command-line tools (--command-config).
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_ADMIN_USER" password="$admin_pw";
EOF
    mv "$st/admin.properties.new" "$st/admin.properties"

    cat >"$st/controller.properties.new" <<EOF
# Client settings of the static PLAIN user, for tools that talk to the INTERNAL listener.
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$KAFKA_CONTROLLER_USER" password="$ctl_pw";
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
    mv "$st/controller.properties.new" "$st/controller.properties"

    # The health check fails fast instead of retrying for the default minute.
    {
      cat "$st/admin.properties"
      printf '%s\n' request.timeout.ms=3000 default.api.timeout.ms=5000 \
        socket.connection.setup.timeout.max.ms=2000
    } >"$st/check.properties"
  )
}

# _kafka_tls ST: the broker's certificate for the CLIENT_SSL listener, signed by the stack's CA,
# as the PEM key store Kafka reads (key, then certificate); prints its fingerprint.
_kafka_tls() {
  local st=$1 fingerprint
  fingerprint=$(tls_server_cert "$st/tls" broker IP:127.0.0.1 "IP:$MYSIMBDP_NODE_IP" DNS:localhost) || return 1
  (umask 077 && cat "$st/tls/broker.key" "$st/tls/broker.crt" >"$st/tls/broker.pem.new") || return 1
  mv "$st/tls/broker.pem.new" "$st/tls/broker.pem"
  printf '%s\n' "$fingerprint"
}

# Formats the log directory once. A directory without meta.properties is the remains of an
# interrupted format (the tool writes it last) and is wiped and formatted again.
_kafka_format() {
  local st=$1 admin_pw=$2
  local data=$st/data
  if [ -f "$data/meta.properties" ]; then
    return 0
  fi
  if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
    log "kafka: $data holds an unfinished format; formatting again"
    rm -rf "$data"
  fi
  local cid
  if [ ! -s "$st/cluster.id" ]; then
    kafka_cli kafka.tools.StorageTool random-uuid >"$st/cluster.id.new" || die "kafka: cannot generate a cluster id"
    mv "$st/cluster.id.new" "$st/cluster.id"
  fi
  cid=$(cat "$st/cluster.id")
  log "kafka: formatting $data (cluster $cid) with the SCRAM credential of $KAFKA_ADMIN_USER"
  kafka_cli kafka.tools.StorageTool format --config "$st/server.properties" --cluster-id "$cid" \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$admin_pw]" \
    >>"$(_kafka_log)" 2>&1 || {
    log_tail "$(_kafka_log)" 20
    die "kafka: formatting $data failed"
  }
}

# Kafka 4.1 can come back from a restart without SCRAM credentials: replaying a metadata log in
# which a user was deleted drops the users added after the deletion. The admin's credential is
# therefore written again (same password) on every start, through the INTERNAL listener as the
# static PLAIN user; tenants' users are restored by the operator, which keeps their passwords.
_kafka_assert_admin() {
  local st=$1 admin_pw=$2
  port_in_use "$MYSIMBDP_KAFKA_INTERNAL_PORT" || return 1
  kafka_cli kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$MYSIMBDP_KAFKA_INTERNAL_PORT" \
    --command-config "$st/controller.properties" --alter --entity-type users --entity-name "$KAFKA_ADMIN_USER" \
    --add-config "SCRAM-SHA-512=[password=$admin_pw]"
}

# Healthy = the CLIENT port listens and the admin, over SCRAM-SHA-512, gets a metadata answer
# (listing topics needs an authenticated session, a registered broker and the authorizer).
_kafka_healthy() {
  port_in_use "$MYSIMBDP_KAFKA_PORT" || return 1
  kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$MYSIMBDP_KAFKA_PORT" \
    --command-config "$(_kafka_state)/check.properties" --list
}

# The configuration the running broker would have read: server.properties and the broker's pid.
_kafka_started_config() {
  cat "$1/server.properties"
  printf '# broker pid %s\n' "$(proc_pid kafka)"
}

kafka_up() {
  local home st logf
  home=$(kafka_build) || die "kafka: build failed"
  st=$(_kafka_state)
  logf=$(_kafka_log)
  mkdir -p "$st"
  chmod 700 "$st"
  local admin_pw ctl_pw fingerprint
  admin_pw=$(_kafka_secret kafka-admin.password)
  ctl_pw=$(_kafka_secret kafka-controller.password)
  fingerprint=$(_kafka_tls "$st") || die "kafka: cannot make the broker's TLS certificate"
  _kafka_write_config "$st" "$admin_pw" "$ctl_pw" "$fingerprint"
  if proc_alive kafka; then
    # server.properties.started is what the running broker read, with its pid. A broker
    # started with other settings (a new listener or port, a renewed certificate), or by
    # something that did not record them, is restarted: brief, and the only way a new
    # listener takes effect.
    if _kafka_started_config "$st" | cmp -s - "$st/server.properties.started"; then
      log "kafka is already running (pid $(proc_pid kafka)); checking it answers"
      wait_until "kafka" 60 "$logf" kafka _kafka_healthy
      return 0
    fi
    log "kafka: its configuration changed since the broker started; restarting it"
    kafka_down
  fi
  require_free_port "$MYSIMBDP_KAFKA_PORT" "the Kafka client listener" MYSIMBDP_KAFKA_PORT
  require_free_port "$MYSIMBDP_KAFKA_CONTROLLER_PORT" "the Kafka controller listener" MYSIMBDP_KAFKA_CONTROLLER_PORT
  require_free_port "$MYSIMBDP_KAFKA_INTERNAL_PORT" "the Kafka internal listener" MYSIMBDP_KAFKA_INTERNAL_PORT
  require_free_port "$MYSIMBDP_KAFKA_SSL_PORT" "the Kafka SASL_SSL client listener" MYSIMBDP_KAFKA_SSL_PORT
  _kafka_format "$st" "$admin_pw"

  log "kafka: starting $KAFKA_VERSION on 127.0.0.1:$MYSIMBDP_KAFKA_PORT (log: $logf)"
  local start=$SECONDS
  # No JMX options: the JVM then opens no remote management port.
  proc_start kafka "$logf" "$(_kafka_java)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK_DIR/kafka-log4j2.properties" -Dmysimbdp.log.level=INFO \
    -cp "$home/libs/*" kafka.Kafka "$st/server.properties"
  _kafka_started_config "$st" >"$st/server.properties.started"
  wait_until "kafka's controller to take the admin's credential" 120 "$logf" kafka \
    _kafka_assert_admin "$st" "$admin_pw"
  wait_until "kafka" 120 "$logf" kafka _kafka_healthy
  log "kafka: ready in $((SECONDS - start))s"
}

kafka_down() {
  # Controlled shutdown of a single node is quick; the margin covers a slow log flush.
  proc_stop kafka 60
}

kafka_status() {
  local home
  home=$(_kafka_home)
  if [ -f "$home/.complete" ]; then
    status_row "kafka build" built "$home"
  else
    status_row "kafka build" missing "run: bash $STACK_DIR/kafka.sh build"
  fi
  if proc_alive kafka; then
    local detail
    detail="pid $(proc_pid kafka), 127.0.0.1:$MYSIMBDP_KAFKA_PORT SASL_PLAINTEXT, 127.0.0.1:$MYSIMBDP_KAFKA_SSL_PORT SASL_SSL; SCRAM-SHA-512"
    if port_in_use "$MYSIMBDP_KAFKA_PORT"; then
      status_row "kafka" running "$detail"
    else
      status_row "kafka" starting "$detail (client port not listening yet)"
    fi
  else
    status_row "kafka" stopped "state: $(_kafka_state)"
  fi
}

kafka_env() {
  local pw=
  if [ -s "$MYSIMBDP_STATE/secrets/kafka-admin.password" ]; then
    pw=$(cat "$MYSIMBDP_STATE/secrets/kafka-admin.password")
  fi
  printf 'export %s=%q\n' \
    MYSIMBDP_KAFKA_BOOTSTRAP "127.0.0.1:$MYSIMBDP_KAFKA_PORT" \
    MYSIMBDP_KAFKA_SASL_MECHANISM SCRAM-SHA-512 \
    MYSIMBDP_KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT \
    MYSIMBDP_KAFKA_ADMIN_USER "$KAFKA_ADMIN_USER" \
    MYSIMBDP_KAFKA_ADMIN_PASSWORD "$pw" \
    MYSIMBDP_KAFKA_HOME "$(_kafka_home)" \
    MYSIMBDP_KAFKA_ADMIN_CONFIG "$(_kafka_state)/admin.properties" \
    MYSIMBDP_KAFKA_SSL_BOOTSTRAP "127.0.0.1:$MYSIMBDP_KAFKA_SSL_PORT" \
    MYSIMBDP_KAFKA_CA_FILE "$(_tls_dir)/ca.crt"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # shellcheck source=tls.sh
  . "$STACK_DIR/tls.sh"
  case "${1:-}" in
    build) kafka_build ;;
    up) kafka_up ;;
    down) kafka_down ;;
    status) kafka_status ;;
    env) kafka_env ;;
    *)
      echo "usage: bash $0 build|up|down|status|env" >&2
      exit 2
      ;;
  esac
fi

#!/usr/bin/env bash
# Apache Kafka, one broker in KRaft mode (broker + controller in one process) on loopback.
# Kafka 4.1 pins slf4j-api 1.7, so the binding is log4j-slf4j-impl (not the slf4j2 one).
# The jars come from Maven Central through mvn, cached in $VIGIL_CACHE/kafka-<version>/libs.
#   scripts/kafka.sh install          resolve the jars (skipped when cached)
#   scripts/kafka.sh start DIR        format storage in DIR/kafka and start; writes DIR/kafka.env
#   scripts/kafka.sh stop DIR
#   scripts/kafka.sh restart DIR      start again on the same ports and data (after stop)
set -euo pipefail
VIGIL_SERVICE=kafka
source "$(dirname "$0")/lib.sh"
KAFKA_VERSION="${VIGIL_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION=2.24.3
HOME_DIR="$VIGIL_CACHE/kafka-$KAFKA_VERSION"

install() {
  if [ -f "$HOME_DIR/.complete" ]; then log "Kafka $KAFKA_VERSION jars found in $HOME_DIR"; return; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$HOME_DIR" && mkdir -p "$HOME_DIR"
  cat >"$HOME_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.vigil</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  (cd "$HOME_DIR" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs -DincludeScope=runtime) \
    >"$HOME_DIR/mvn.log" 2>&1 || { tail -n 40 "$HOME_DIR/mvn.log" >&2; die "mvn could not resolve the Kafka jars"; }
  cat >"$HOME_DIR/log4j2.properties" <<'L4J'
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
L4J
  touch "$HOME_DIR/.complete"
  log "Kafka $KAFKA_VERSION jars ready ($(ls "$HOME_DIR/libs" | wc -l) jars)"
}

start() {
  local dir=$1; mkdir -p "$dir/kafka"
  install
  local port cport; port=$(free_port); cport=$(free_port)
  local data="$dir/kafka/data" props="$dir/kafka/server.properties" logf="$dir/kafka/kafka.log"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  local cp="$HOME_DIR/libs/*" jopts=(-Xms256m -Xmx512m -XX:+UseG1GC "-Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties")
  # A DIR brought up before keeps its data and cluster id (a new id would not match its storage).
  local cluster
  cluster=$(sed -n 's/^cluster.id=//p' "$data/meta.properties" 2>/dev/null || true)
  [ -n "$cluster" ] || cluster=$(java "${jopts[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$logf" | tail -n 1)
  java "${jopts[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cluster" -c "$props" --ignore-formatted >>"$logf" 2>&1 \
    || { tail -n 40 "$logf" >&2; die "StorageTool format"; }
  log "starting broker on 127.0.0.1:$port (controller $cport, data $data)"
  nohup java "${jopts[@]}" -cp "$cp" kafka.Kafka "$props" >>"$logf" 2>&1 &
  echo $! >"$dir/kafka/pid"
  # The port opens before the broker is registered; wait for the startup line as well.
  wait_for "Kafka" 90 "$logf" bash -c "grep -q 'Kafka Server started' '$logf' && (exec 3<>/dev/tcp/127.0.0.1/$port)" \
    || die "Kafka did not start (log kept at $logf)"
  echo "KAFKA_BROKERS=127.0.0.1:$port" >"$dir/kafka.env"
  log "Kafka answering on 127.0.0.1:$port"
}

stop() { stop_pidfile "$1/kafka/pid"; rm -f "$1/kafka.env"; log "stopped"; }

# Same server.properties, so the same ports and log.dirs: clients that were connected before
# see the broker come back where it was (outage tests), with its topics and offsets kept.
restart() {
  local dir=$1 props="$1/kafka/server.properties" logf="$1/kafka/kafka.log"
  [ -f "$props" ] || die "no $props: start DIR first"
  stop_pidfile "$dir/kafka/pid"
  local port; port=$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$props")
  local cp="$HOME_DIR/libs/*" jopts=(-Xms256m -Xmx512m -XX:+UseG1GC "-Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties")
  local mark; mark=$(wc -l <"$logf")
  log "restarting broker on 127.0.0.1:$port"
  nohup java "${jopts[@]}" -cp "$cp" kafka.Kafka "$props" >>"$logf" 2>&1 &
  echo $! >"$dir/kafka/pid"
  wait_for "Kafka" 90 "$logf" bash -c "tail -n +$((mark + 1)) '$logf' | grep -q 'Kafka Server started' && (exec 3<>/dev/tcp/127.0.0.1/$port)" \
    || die "Kafka did not restart (log kept at $logf)"
  echo "KAFKA_BROKERS=127.0.0.1:$port" >"$dir/kafka.env"
  log "Kafka answering again on 127.0.0.1:$port"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  restart) restart "${2:?DIR}" ;;
  *) echo "usage: $0 install|start DIR|stop DIR|restart DIR" >&2; exit 2 ;;
esac

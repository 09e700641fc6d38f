#!/usr/bin/env bash
# TLS with real servers: PostgreSQL with a certificate of a test CA, checked
# by the binary with sslmode=verify-full the way the chart configures it
# (PGSSLMODE, PGSSLROOTCERT), and an OpenSSL TLS server in front of which
# the consumer's Kafka clients must complete a verified handshake before
# they send their first request. Needs FC_BIN and the PG* variables of
# pg_virtualenv (PGHOST=localhost).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${FC_BIN:?}"
work=$(mktemp -d)
chmod 755 "$work"
schema=deploy_tls_$$
s_server=

cleanup() {
  [ -n "$s_server" ] && kill "$s_server" 2>/dev/null || true
  stop_all
  sql -c "ALTER SYSTEM RESET ssl" -c "ALTER SYSTEM RESET ssl_cert_file" \
    -c "ALTER SYSTEM RESET ssl_key_file" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
  sql -c "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# ca NAME: a self-signed CA in $work/NAME.crt, .key
ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$work/$1.key" -out "$work/$1.crt" 2>/dev/null
}
ca test-ca
ca other-ca
# The server's certificate names localhost only, as verify-full checks.
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/test-ca.crt" -CAkey "$work/test-ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null

# The server reads its key as the owner of the data directory, and only then.
owner=$(stat -c %U "$(sql -c 'SHOW data_directory')")
install -m 0600 -o "$owner" "$work/server.key" "$work/pg.key"
install -m 0644 -o "$owner" "$work/server.crt" "$work/pg.crt"
sql -c "ALTER SYSTEM SET ssl_cert_file = '$work/pg.crt'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$work/pg.key'" -c "ALTER SYSTEM SET ssl = on" \
  -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 50); do [ "$(sql -c 'SHOW ssl')" = on ] && break; sleep 0.1; done
expect_eq "postgresql serves TLS" on "$(sql -c 'SHOW ssl')"

# --- PostgreSQL: verify-full ----------------------------------------------------
migrate() {
  "$FC_BIN" migrate --database.schema="$schema" --log.format=text 2>&1
}
rc=0
out=$(PGSSLMODE=verify-full PGSSLROOTCERT="$work/test-ca.crt" migrate) || rc=$?
expect_eq "migrate with verify-full and the server's CA: exit status" 0 "$rc"

rc=0
out=$(PGSSLMODE=verify-full PGSSLROOTCERT="$work/other-ca.crt" migrate) || rc=$?
expect_eq "verify-full against another CA: exit status" 1 "$rc"
expect_match "verify-full against another CA: says why" "certificate verify failed" "$out"

rc=0
out=$(PGSSLMODE=verify-full PGSSLROOTCERT=/etc/ssl/certs/ca-certificates.crt migrate) || rc=$?
expect_eq "verify-full against the system CAs (the chart's default): exit status" 1 "$rc"
expect_match "verify-full against the system CAs: says why" "certificate verify failed" "$out"

rc=0
out=$(PGHOST=127.0.0.1 PGSSLMODE=verify-full PGSSLROOTCERT="$work/test-ca.crt" migrate) || rc=$?
expect_eq "verify-full, certificate for another host name: exit status" 1 "$rc"
expect_match "verify-full, another host name: says why" 'does not match host name "127.0.0.1"' \
  "$out"

# The running consumer's own connections (ingest and publisher) use TLS.
start_kafka_mock "$FC_BIN" "$work"
PGSSLMODE=verify-full PGSSLROOTCERT="$work/test-ca.crt" PGAPPNAME=fc-tls-$$ \
  "$FC_BIN" run --kafka.bootstrap.servers="$BOOTSTRAP" --database.schema="$schema" \
  --http.port=0 --log.format=text 2>"$work/run.log" &
consumer=$!
conns=0
for _ in $(seq 300); do
  conns=$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fc-tls-$$'")
  [ "$conns" -ge 2 ] && break
  sleep 0.1
done
expect_eq "consumer connections to postgresql (ingest, publisher)" 2 "$conns"
expect_eq "of which without TLS" 0 "$(sql -c "SELECT count(*) FROM pg_stat_activity a
  JOIN pg_stat_ssl s USING (pid) WHERE application_name = 'fc-tls-$$' AND NOT s.ssl")"
stop_wait "$consumer"
expect_eq "consumer over TLS: exit status after SIGTERM" 0 "$STOP_RC"

# --- Kafka: a verified TLS handshake through the kafka. pass-through -------------
# kafka_tls CA: runs the consumer against an OpenSSL TLS server with
# FEEDBACK_KAFKA_SSL_CA_LOCATION=CA until the server saw its first request,
# or 20 s; leaves the server's output in $work/s_server.out and the log in
# $work/kafka.log.
kafka_tls() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # It closes a connection when its stdin ends: a FIFO this shell holds open never does.
  [ -p "$work/stdin" ] || mkfifo "$work/stdin"
  exec 4<>"$work/stdin"
  openssl s_server -quiet -accept "$port" -cert "$work/server.crt" -key "$work/server.key" \
    <"$work/stdin" >"$work/s_server.out" 2>/dev/null &
  s_server=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  FEEDBACK_KAFKA_SSL_CA_LOCATION=$1 "$FC_BIN" run --kafka.bootstrap.servers="localhost:$port" \
    --kafka.security.protocol=SSL --kafka.client.id=fc-tls-probe-$$ \
    --database.schema="$schema" --http.port=0 --log.format=text 2>"$work/kafka.log" &
  local pid=$!
  for _ in $(seq 200); do
    grep -aq "fc-tls-probe-$$" "$work/s_server.out" && break
    grep -q "certificate verify failed" "$work/kafka.log" && break
    sleep 0.1
  done
  stop_wait "$pid"
  kill "$s_server" 2>/dev/null || true
  wait "$s_server" 2>/dev/null || true
  s_server=
  exec 4>&-
}

kafka_tls "$work/test-ca.crt"
# Kafka requests carry the client id in their header: it went through TLS.
if grep -aq "fc-tls-probe-$$" "$work/s_server.out"; then
  pass "kafka over TLS: the server received a request after a verified handshake"
else
  fail "kafka over TLS: no request reached the TLS server; log: $(tail -5 "$work/kafka.log")"
fi
expect_eq "kafka over TLS: exit status after SIGTERM" 0 "$STOP_RC"

kafka_tls "$work/other-ca.crt"
if grep -aq "fc-tls-probe-$$" "$work/s_server.out"; then
  fail "kafka over TLS with another CA: a request was sent"
else
  pass "kafka over TLS with another CA: no request was sent"
fi
expect_match "kafka over TLS with another CA: the log says why" "certificate verify failed" \
  "$(cat "$work/kafka.log")"

finish

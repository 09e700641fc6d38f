#!/usr/bin/env bash
# The container image without a container engine: builds the build context
# that deploy/Dockerfile's build stage copies (its COPY lines, nothing else),
# runs deploy/image-build.sh in it as the Dockerfile does, checks that the
# runtime stage installs exactly the libraries the binary links, then runs
# the installed binary as the image's numeric non-root user from a
# directory it cannot write: migrate, --print-config (secrets redacted) and
# a short run against the embedded Kafka that ends with 0 on SIGTERM.
# Needs FC_FEEDGEN and the PG* variables.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${FC_FEEDGEN:?}"
dockerfile=$DEPLOY_ROOT/deploy/Dockerfile
work=$(mktemp -d)
chmod 755 "$work"
schema=deploy_image_$$
cleanup() {
  stop_all
  sql -c "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the Dockerfile's two stages --------------------------------------------
build_stage=$(awk '/^FROM /{n++} n==1' "$dockerfile")
runtime_stage=$(awk '/^FROM /{n++} n==2' "$dockerfile")
expect_match "build stage on Debian bookworm" '^FROM debian:bookworm AS build' "$build_stage"
expect_match "runtime stage on bookworm-slim" '^FROM debian:bookworm-slim' "$runtime_stage"
# The packages of the runtime stage's apt-get install, one per line, sorted.
runtime_pkgs=$(printf '%s\n' "$runtime_stage" | sed -n '/apt-get install/,/rm -rf/p' |
  tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
  grep -vE '^(apt-get|install|rm|lib/apt|update|noninteractive)$' | sort -u | paste -sd' ')
expect_eq "runtime packages" \
  "ca-certificates libjansson4 libmicrohttpd12 libpq5 libprotobuf-c1 librdkafka1" "$runtime_pkgs"
user=$(printf '%s\n' "$runtime_stage" | sed -n 's/^USER //p')
expect_match "numeric non-root USER" '^[1-9][0-9]*:[1-9][0-9]*$' "$user"
uid=${user%%:*}
gid=${user##*:}
expect_eq "ENTRYPOINT" 'ENTRYPOINT ["/usr/local/bin/feedback-consumer"]' \
  "$(printf '%s\n' "$runtime_stage" | grep '^ENTRYPOINT')"
expect_eq "CMD" 'CMD ["run"]' "$(printf '%s\n' "$runtime_stage" | grep '^CMD')"

# --- the build context of the build stage, from its COPY lines --------------
ctx=$work/ctx
mkdir -p "$ctx"
while read -r _ args; do
  read -ra words <<<"$args"
  dest=${words[-1]}
  for src in "${words[@]:0:${#words[@]}-1}"; do
    mkdir -p "$ctx/$dest"
    if [ -d "$DEPLOY_ROOT/$src" ]; then
      cp -a "$DEPLOY_ROOT/$src/." "$ctx/$dest/"
    else
      cp -a "$DEPLOY_ROOT/$src" "$ctx/$dest/"
    fi
  done
done < <(printf '%s\n' "$build_stage" | grep '^COPY ')
run=$(printf '%s\n' "$build_stage" | sed -n 's/^RUN \(deploy\/image-build.sh.*\)/\1/p')
expect_eq "the build stage runs the build script" "deploy/image-build.sh /staging /build" "$run"
echo "== deploy/image-build.sh in a context of $(find "$ctx" -type f | wc -l) files"
"$ctx/deploy/image-build.sh" "$work/staging" "$work/build" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; fail "image-build.sh failed"; finish; }
bin=$work/staging/usr/local/bin/feedback-consumer
[ -x "$bin" ] || { fail "no binary at /usr/local/bin/feedback-consumer in the staging root"; finish; }

# Every library the binary links comes from a runtime package (or libc6).
needed_pkgs=$(for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  path=$(ldd "$bin" | awk -v l="$lib" '$1 == l { print $3 }')
  pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(realpath "$path")" 2>/dev/null ||
    dpkg -S "/usr$path" 2>/dev/null || echo "unknown-$lib:")
  echo "${pkg%%:*}"
done | sort -u | paste -sd' ')
echo "linked from: $needed_pkgs"
for pkg in $needed_pkgs; do
  case " $runtime_pkgs libc6 " in
  *" $pkg "*) pass "library package $pkg is in the runtime stage" ;;
  *) fail "the binary links a library of $pkg, which the runtime stage does not install" ;;
  esac
done

# --- the installed binary as the image's user --------------------------------
# Under pg_virtualenv as root the tests run as root: switch to the image's
# uid like the kubelet would; as any other user, stay that user.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  as_user=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
fi
mkdir -m 555 "$work/readonly"
secret_pw=s3cret-$$-kafka
db_pw=s3cret-$$-db
printf '%s\n' "$secret_pw" >"$work/kafka-password"
chmod 644 "$work/kafka-password"
image() {
  (cd "$work/readonly" && exec env HOME=/nonexistent TMPDIR=/tmp FEEDBACK_DATABASE_SCHEMA="$schema" \
    FEEDBACK_HTTP_PORT=0 "${as_user[@]}" "$bin" "$@")
}
expect_eq "runs as a non-root user" "non-root" \
  "$( (cd "$work/readonly" && "${as_user[@]}" id -u) | sed 's/^[1-9][0-9]*$/non-root/')"

out=$(image migrate --log.format=text 2>&1) || fail "migrate: $out"
expect_match "migrate" "schema \"$schema\" is at version [0-9]+" "$out"

out=$(FEEDBACK_KAFKA_SASL_PASSWORD_FILE=$work/kafka-password \
  FEEDBACK_DATABASE_URL="host=db.example port=5432 user=app password=$db_pw" \
  image run --print-config 2>&1) || fail "--print-config: $out"
expect_match "the kafka password is redacted" '^kafka\.sasl\.password = <redacted>' "$out"
expect_match "the database password is redacted" 'password=<redacted>' "$out"
expect_no_match "no secret in the printed configuration" "$secret_pw|$db_pw" "$out"

start_kafka_mock "$bin" "$work"
gen=$("$FC_FEEDGEN" --bootstrap "$BOOTSTRAP" --count 100 --seed 5 --duplicates 0 --malformed 0 --quiet)
messages=$(printf '%s' "$gen" | sed -n 's/.* messages=\([0-9]*\).*/\1/p')
# As image(), but the background subshell itself becomes the binary.
(cd "$work/readonly" && exec env HOME=/nonexistent TMPDIR=/tmp FEEDBACK_DATABASE_SCHEMA="$schema" \
  FEEDBACK_HTTP_PORT=0 FEEDBACK_KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" "${as_user[@]}" "$bin" run \
  --kafka.group.id=deploy-image 2>"$work/run.log") &
consumer=$!
DEPLOY_PIDS+=("$consumer")
wait_offsets "$schema" deploy-image "$messages" || fail "the consumer did not catch up"
expect_eq "events in the ledger (--count)" 100 "$(sql -c "SELECT count(*) FROM \"$schema\".ledger")"
stop_wait "$consumer"
expect_eq "exit status after SIGTERM" 0 "$STOP_RC"
expect_match "JSON log lines (the image's default format)" '^\{"' "$(head -1 "$work/run.log")"
finish

#!/usr/bin/env bash
# Runs a command with the storage backends the tests need: PostgreSQL, Redis
# and MinIO.
#
#   scripts/testenv.sh CMD [ARGS...]      e.g. scripts/testenv.sh go test ./store/...
#
# For each backend: when STREAMD_TEST_POSTGRES_URL / STREAMD_TEST_REDIS_URL /
# STREAMD_TEST_S3_ENDPOINT is set and answers, it is used as is; otherwise a
# throwaway server is started on a free 127.0.0.1 port in a temporary folder
# (installing the program with apt-get / go install when missing). The
# command gets these variables:
#
#   STREAMD_TEST_POSTGRES_URL      postgres://postgres@127.0.0.1:P/postgres?sslmode=disable
#   STREAMD_TEST_POSTGRES_BIN      PostgreSQL's bin folder   } only when this script
#   STREAMD_TEST_POSTGRES_DATADIR  the cluster's data folder } started the server
#   STREAMD_TEST_REDIS_URL         redis://127.0.0.1:P/0
#   STREAMD_TEST_S3_ENDPOINT       127.0.0.1:P
#   STREAMD_TEST_S3_ACCESS_KEY, STREAMD_TEST_S3_SECRET_KEY
#
# Whatever the script started is stopped and its folders removed when the
# command ends, fails or is interrupted; the script exits with the command's
# status. A backend that cannot be had is reported on one line: the tests
# that need it then skip loudly, or, under CI=true, the run fails here.
set -uo pipefail

GO=${GO:-go}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

say() { echo "testenv: $*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

tmp=""
pg_bin="" pg_data="" redis_pid="" minio_pid=""
failed=()

cleanup() {
  local st=$?
  if [[ -n $minio_pid ]]; then kill "$minio_pid" 2>/dev/null; wait "$minio_pid" 2>/dev/null; fi
  if [[ -n $redis_pid ]]; then
    kill "$redis_pid" 2>/dev/null
    # redis-server daemonizes: wait for that pid to go away, at most 5 s.
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w -t 10 stop >/dev/null 2>&1
  fi
  [[ -n $tmp ]] && rm -rf "$tmp"
  return "$st"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need_tmp() {
  if [[ -z $tmp ]]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamd-testenv.XXXXXX")
    # PostgreSQL runs as the postgres user, which must reach its folder inside.
    chmod 755 "$tmp"
  fi
}

# free_port prints a 127.0.0.1 TCP port nobody listens on (checked by
# connecting, so there is a small race with other programs; starts retry).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

can_install() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  can_install || return 1
  say "installing $* with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# ---------------------------------------------------------------- PostgreSQL
# PostgreSQL refuses to run as root: as root, run its programs as postgres.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

find_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
  done
  return 1
}

pg_answers() {
  command -v psql >/dev/null 2>&1 || return 0 # cannot check: trust the caller
  PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

start_postgres() {
  local t0 port log
  t0=$(now)
  if ! pg_bin=$(find_pg_bin); then
    apt_install postgresql || { say "postgres: FAILED — no PostgreSQL binaries in /usr/lib/postgresql/*/bin and cannot apt-get install postgresql"; return 1; }
    pg_bin=$(find_pg_bin) || { say "postgres: FAILED — apt-get installed postgresql but no initdb found"; return 1; }
  fi
  need_tmp
  pg_data=$tmp/pg
  mkdir -p "$pg_data" && chmod 700 "$pg_data"
  [[ $(id -u) -eq 0 ]] && chown postgres "$pg_data"
  log=$tmp/pg.log
  touch "$log"; [[ $(id -u) -eq 0 ]] && chown postgres "$log"
  if ! as_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres -N >"$tmp/initdb.log" 2>&1; then
    say "postgres: FAILED — initdb: $(tail -n1 "$tmp/initdb.log")"
    pg_data=""
    return 1
  fi
  # A throwaway cluster: durability settings off, they only cost time here.
  for _ in 1 2 3; do
    port=$(free_port) || break
    if as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$log" -w -t 30 \
        -o "-p $port -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null 2>&1; then
      export STREAMD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
      export STREAMD_TEST_POSTGRES_BIN=$pg_bin
      export STREAMD_TEST_POSTGRES_DATADIR=$pg_data
      say "postgres: started PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') at 127.0.0.1:$port in $(took "$t0")"
      return 0
    fi
  done
  say "postgres: FAILED — pg_ctl start: $(tail -n1 "$log")"
  pg_data=""
  return 1
}

setup_postgres() {
  if [[ -n ${STREAMD_TEST_POSTGRES_URL:-} ]]; then
    # Only a server this script started may be stopped by the tests.
    unset STREAMD_TEST_POSTGRES_BIN STREAMD_TEST_POSTGRES_DATADIR
    if pg_answers "$STREAMD_TEST_POSTGRES_URL"; then
      say "postgres: using STREAMD_TEST_POSTGRES_URL"
      return 0
    fi
    say "postgres: STREAMD_TEST_POSTGRES_URL does not answer; starting a throwaway server instead"
    unset STREAMD_TEST_POSTGRES_URL
  fi
  start_postgres || failed+=(postgres)
}

# --------------------------------------------------------------------- Redis
redis_ping() { # host port
  local line=""
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 line <&3
  exec 3>&-
  [[ $line == "+PONG"* || $line == "-NOAUTH"* ]]
}

redis_answers() {
  if command -v redis-cli >/dev/null 2>&1; then
    timeout 5 redis-cli -u "$1" ping 2>/dev/null | grep -q PONG
    return
  fi
  local hp=${1#*://}; hp=${hp#*@}; hp=${hp%%/*}
  redis_ping "${hp%:*}" "${hp##*:}"
}

start_redis() {
  local t0 port
  t0=$(now)
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || { say "redis: FAILED — redis-server not found and cannot apt-get install redis-server"; return 1; }
  fi
  need_tmp
  mkdir -p "$tmp/redis"
  for _ in 1 2 3; do
    port=$(free_port) || break
    # 64 databases: internal/testenv.Redis gives every test a database of its own.
    if redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --databases 64 --dir "$tmp/redis" --daemonize yes \
        --pidfile "$tmp/redis/redis.pid" --logfile "$tmp/redis/redis.log" >/dev/null 2>&1; then
      for _ in $(seq 50); do
        redis_ping 127.0.0.1 "$port" && break
        sleep 0.1
      done
      redis_pid=$(cat "$tmp/redis/redis.pid" 2>/dev/null)
      if redis_ping 127.0.0.1 "$port"; then
        export STREAMD_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
        say "redis: started Redis $(redis-server --version | awk '{print $3}' | sed s/v=//) at 127.0.0.1:$port in $(took "$t0")"
        return 0
      fi
      [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null
      redis_pid=""
    fi
  done
  say "redis: FAILED — redis-server did not answer: $(tail -n1 "$tmp/redis/redis.log" 2>/dev/null)"
  return 1
}

setup_redis() {
  if [[ -n ${STREAMD_TEST_REDIS_URL:-} ]]; then
    if redis_answers "$STREAMD_TEST_REDIS_URL"; then
      say "redis: using STREAMD_TEST_REDIS_URL"
      return 0
    fi
    say "redis: STREAMD_TEST_REDIS_URL does not answer; starting a throwaway server instead"
    unset STREAMD_TEST_REDIS_URL
  fi
  start_redis || failed+=(redis)
}

# --------------------------------------------------------------------- MinIO
s3_answers() {
  local ep=${1#*://}
  command -v curl >/dev/null 2>&1 || { (exec 3<>"/dev/tcp/${ep%:*}/${ep##*:}") 2>/dev/null; return; }
  curl -fsS -m 3 -o /dev/null "http://$ep/minio/health/live" 2>/dev/null ||
    curl -sS -m 3 -o /dev/null "http://$ep/" 2>/dev/null # any S3 answers something
}

start_minio() {
  local t0 port cport minio gobin
  t0=$(now)
  gobin=$($GO env GOBIN)
  [[ -z $gobin ]] && gobin=$($GO env GOPATH)/bin
  minio=$gobin/minio
  if [[ ! -x $minio ]]; then
    # MinIO (AGPLv3) is a test program only, never imported: built once from
    # the module proxy, then cached in GOPATH/bin.
    say "minio: building $minio (once, about 3 minutes) ..."
    need_tmp
    if ! $GO install "github.com/minio/minio@$MINIO_VERSION" >"$tmp/minio-build.log" 2>&1; then
      say "minio: FAILED — go install github.com/minio/minio@$MINIO_VERSION: $(tail -n1 "$tmp/minio-build.log")"
      return 1
    fi
    say "minio: built in $(took "$t0")"
    t0=$(now)
  fi
  need_tmp
  mkdir -p "$tmp/minio/data"
  for _ in 1 2 3; do
    port=$(free_port) && cport=$(free_port) || break
    [[ $port == "$cport" ]] && continue
    MINIO_ROOT_USER=minioadmin MINIO_ROOT_PASSWORD=minioadmin MINIO_BROWSER=off \
      MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
      "$minio" server "$tmp/minio/data" --quiet --address "127.0.0.1:$port" \
      --console-address "127.0.0.1:$cport" >"$tmp/minio/minio.log" 2>&1 </dev/null &
    minio_pid=$!
    for _ in $(seq 150); do
      curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/minio/health/live" 2>/dev/null && break
      kill -0 "$minio_pid" 2>/dev/null || break
      sleep 0.1
    done
    if curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/minio/health/live" 2>/dev/null; then
      export STREAMD_TEST_S3_ENDPOINT="127.0.0.1:$port"
      export STREAMD_TEST_S3_ACCESS_KEY=minioadmin STREAMD_TEST_S3_SECRET_KEY=minioadmin
      say "minio: started at 127.0.0.1:$port in $(took "$t0")"
      return 0
    fi
    kill "$minio_pid" 2>/dev/null; wait "$minio_pid" 2>/dev/null
    minio_pid=""
  done
  say "minio: FAILED — did not become healthy: $(tail -n1 "$tmp/minio/minio.log" 2>/dev/null)"
  return 1
}

setup_minio() {
  if [[ -n ${STREAMD_TEST_S3_ENDPOINT:-} ]]; then
    if s3_answers "$STREAMD_TEST_S3_ENDPOINT"; then
      say "minio: using STREAMD_TEST_S3_ENDPOINT"
      return 0
    fi
    say "minio: STREAMD_TEST_S3_ENDPOINT does not answer; starting a throwaway server instead"
    unset STREAMD_TEST_S3_ENDPOINT
  fi
  command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates >/dev/null 2>&1
  start_minio || failed+=(minio)
}

setup_postgres
setup_redis
setup_minio

if [[ ${#failed[@]} -gt 0 ]]; then
  if [[ ${CI:-} == true ]]; then
    say "CI=true and ${failed[*]} could not be had: failing the run"
    exit 1
  fi
  say "without ${failed[*]}: the tests that need it will be SKIPPED"
fi

# Run in the background and wait, so a TERM to this script reaches the trap
# at once; the command gets the signal from the terminal or from cleanup.
"$@" <&0 &
cmd=$!
trap 'kill -INT "$cmd" 2>/dev/null; wait "$cmd"; exit 130' INT
trap 'kill -TERM "$cmd" 2>/dev/null; wait "$cmd"; exit 143' TERM
wait "$cmd"
exit $?

#!/bin/sh
# First start: initdb, then the application's role and database (POSTGRES_USER, _PASSWORD,
# _DB), in a scratch directory that becomes the cluster only once all of it succeeded (a
# failed first start leaves nothing half made); every start: the server in the foreground,
# listening on the compose network.
set -eu
BIN=/usr/lib/postgresql/15/bin
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"
as_postgres() { runuser -u postgres -- "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  scratch="$PGDATA/.init"
  rm -rf "$scratch"
  install -d -o postgres -g postgres -m 700 "$scratch"
  as_postgres "$BIN/initdb" -D "$scratch" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
    >> "$scratch/pg_hba.conf"
  as_postgres "$BIN/pg_ctl" -D "$scratch" -o "-c listen_addresses=''" -w start >/dev/null
  # Values go in as psql variables (quoted by psql), never pasted into the SQL.
  as_postgres "$BIN/psql" -q -v ON_ERROR_STOP=1 -U postgres -d postgres \
    -v user="$POSTGRES_USER" -v password="$POSTGRES_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
create role :"user" login password :'password';
create database :"db" owner :"user";
SQL
  as_postgres "$BIN/pg_ctl" -D "$scratch" -m fast -w stop >/dev/null
  # PG_VERSION last: it is what says "made" to the next start.
  find "$scratch" -mindepth 1 -maxdepth 1 ! -name PG_VERSION -exec mv -t "$PGDATA" {} +
  mv "$scratch/PG_VERSION" "$PGDATA/PG_VERSION"
  rmdir "$scratch"
fi
# setpriv execs (runuser would stay in between): PostgreSQL is PID 1 and gets docker's signals.
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" \
  -c listen_addresses='*'

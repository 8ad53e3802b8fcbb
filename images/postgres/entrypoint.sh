#!/bin/sh
# First start: initdb, then the application's role and database (POSTGRES_USER, _PASSWORD,
# _DB); every start: the server in the foreground, listening on the compose network.
set -eu
BIN=/usr/lib/postgresql/15/bin
as_postgres() { runuser -u postgres -- "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  as_postgres "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  as_postgres "$BIN/psql" -q -v ON_ERROR_STOP=1 -U postgres -d postgres \
    -c "create role \"$POSTGRES_USER\" login password '$POSTGRES_PASSWORD'" \
    -c "create database \"$POSTGRES_DB\" owner \"$POSTGRES_USER\""
  as_postgres "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
# setpriv execs (runuser would stay in between): PostgreSQL is PID 1 and gets docker's signals.
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" \
  -c listen_addresses='*'

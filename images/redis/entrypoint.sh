#!/bin/sh
# The broker's access list, from the environment: the API ("hub") may use every key and
# channel; each data node only those under its own prefix (runner.celery_app.node_keyprefix),
# so a node's credentials cannot read, take or answer another node's tasks, nor list another
# node's keys or channels; nobody else may connect.
# UNSEEN_REDIS_NODES is "label:password label:password ...".
set -euf  # -f: the list is split on spaces, never expanded as file names
: "${UNSEEN_REDIS_HUB_PASSWORD:?set UNSEEN_REDIS_HUB_PASSWORD (the API's broker password)}"
acl=/data/users.acl
umask 077
{
  echo "user default off"
  echo "user hub on >$UNSEEN_REDIS_HUB_PASSWORD ~* &* +@all -@admin"
  for entry in ${UNSEEN_REDIS_NODES:-}; do
    node=${entry%%:*}
    password=${entry#*:}
    case "$node" in
      hub|default|"" | *[!A-Za-z0-9_.-]*) echo "bad node label in UNSEEN_REDIS_NODES: $node" >&2; exit 2 ;;
    esac
    if [ "$password" = "$entry" ] || [ -z "$password" ] || [ "${password#*[!0-9a-fA-F]}" != "$password" ]; then
      echo "node $node needs a hex password in UNSEEN_REDIS_NODES (label:password)" >&2
      exit 2
    fi
    # Its worker's remote-control pattern is named literally: Redis matches PSUBSCRIBE
    # patterns against the list as strings, not as globs.
    echo "user $node on >$password ~unseen.$node:* &unseen.$node:* &unseen.$node:/0.celery.pidbox" \
      "+@all -@admin -@dangerous -scan -randomkey -pubsub"
  done
} > "$acl"
# Append-only file on: a restarted broker keeps queued tasks and queue bindings.
exec redis-server --bind 0.0.0.0 --protected-mode no --dir /data --aclfile "$acl" \
  --appendonly yes --appendfsync everysec --save ""

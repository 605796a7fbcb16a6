#!/bin/sh
# Creates the JetStream stream and KV buckets jobbridge uses, for sites where
# the NATS operator owns them and jobbridge runs with `stream.manage: false`.
# Safe to run again: what exists is left as it is.
#
#   NATS_URL=nats://nats:4222 NATS_CREDS=admin.creds REPLICAS=3 deploy/nats/setup.sh
#
# Needs the nats CLI (https://github.com/nats-io/natscli) and a user allowed
# to manage streams. The names and limits are jobbridge's defaults: stream
# JOBS on jobs.>, file storage, 7 days (168h), duplicate window 2m; buckets
# JOBBRIDGE_STATE, JOBBRIDGE_WATCHES and JOBBRIDGE_LEASES (replicas and
# shard leases, used only with cluster.enabled) with history 1. If you
# change a name here, set the same in the config (stream.name,
# stream.subjectPrefix, stream.stateBucket, stream.watchBucket,
# cluster.leaseBucket).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
replicas=${REPLICAS:-1}
case $replicas in
  1|2|3|4|5) ;;
  *) echo "REPLICAS must be 1 to 5, not '$replicas'" >&2; exit 2 ;;
esac
command -v nats >/dev/null 2>&1 || { echo "the nats CLI is not on PATH; install natscli" >&2; exit 2; }

if nats stream info JOBS >/dev/null 2>&1; then
  echo "stream JOBS exists; left unchanged"
else
  config=$(mktemp)
  trap 'rm -f "$config"' EXIT
  sed "s/\"num_replicas\": 1/\"num_replicas\": $replicas/" "$here/stream-JOBS.json" >"$config"
  nats stream add JOBS --config "$config"
fi

for bucket in JOBBRIDGE_STATE JOBBRIDGE_WATCHES JOBBRIDGE_LEASES; do
  if nats kv info "$bucket" >/dev/null 2>&1; then
    echo "KV bucket $bucket exists; left unchanged"
  else
    nats kv add "$bucket" --history 1 --storage file --replicas "$replicas" \
      --description "jobbridge $bucket"
  fi
done

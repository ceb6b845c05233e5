#!/usr/bin/env bash
# capture-transients.sh OUT - both sites' `rbd mirror pool status --verbose` about every second
# through the moments that matter, on the lab of scripts/ceph-lab.sh (which must be up, with
# csi-vol-0001 primary on site-a): a Ramen-style failover and failback (demote, promote with
# retries), a forced promotion (split brain) and its resync, and an image whose mirroring is
# disabled under it. Captures taken 30 s after each step hide exactly the stale records the
# verdicts must survive; these keep them. OUT/index.tsv: time, site|ACTION, file|what.
#
# capture-transients.sh OUT site-loss - instead: site-a is lost (ceph-lab.sh freeze: its `rbd`
# calls time out and leave empty files), site-b force-promoted; site-a returns un-fenced, is
# demoted and resynced as Ramen recovers it, and the lab is failed back to site-a.
set -Eeuo pipefail
LAB=$(dirname "$0")/ceph-lab.sh
BASE=${AUDITD_CEPH_LAB:-/tmp/auditd-ceph-lab}
OUT=${1:?output directory}
SCENARIO=${2:-switches}
IMG=replicapool/csi-vol-0001
SNAP_TIMEOUT=10 # a frozen site's `rbd` never answers: recorded as an empty capture
mkdir -p "$OUT"
n=0

now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
action() { echo -e "$(now)\tACTION\t$*" >>"$OUT/index.tsv"; }
snap() {
  for s in site-a site-b; do
    n=$((n + 1))
    local f
    f=$(printf "%04d-%s.json" "$n" "$s")
    local t
    t=$(now)
    # rbd itself under the timeout (through ceph-lab.sh, a hung rbd would outlive it and
    # write its answer into this file after the site returned).
    timeout "$SNAP_TIMEOUT" rbd --cluster "$s" -c "$BASE/$s/ceph.conf" \
      mirror pool status replicapool --verbose --format json >"$OUT/$f" 2>/dev/null || true
    echo -e "$t\t$s\t$f" >>"$OUT/index.tsv"
  done
}
poll() { local end=$((SECONDS + $1)); while ((SECONDS < end)); do snap; sleep 0.5; done; }
state() { "$LAB" rbd "$1" mirror image status "$2" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
wait_state() { # wait_state SITE IMAGE STATE SECONDS, capturing meanwhile
  local end=$((SECONDS + $4))
  until [[ $(state "$1" "$2" 2>/dev/null) == "$3" ]]; do
    ((SECONDS < end)) || { echo "timeout: $1 $2 not $3" >&2; exit 1; }
    snap
    sleep 0.5
  done
}
promote() { # retried like an operator: rc 30 until the demotion snapshot has synced
  local end=$((SECONDS + 120))
  until "$LAB" rbd "$1" mirror image promote ${2:+"$2"} "$IMG" 2>/dev/null; do
    ((SECONDS < end)) || { echo "promote on $1 never succeeded" >&2; exit 1; }
    snap
  done
}

recover_site_a() { # demote and resync the old primary, then fail back to it
  action "demote site-a"
  "$LAB" rbd site-a mirror image demote "$IMG"
  poll 5
  action "resync site-a"
  "$LAB" rbd site-a mirror image resync "$IMG"
  wait_state site-a "$IMG" up+replaying 180
  poll 5
  action "demote site-b"
  "$LAB" rbd site-b mirror image demote "$IMG"
  promote site-a
  wait_state site-b "$IMG" up+replaying 120
}

wait_state site-b "$IMG" up+replaying 120
poll 5
if [[ $SCENARIO == site-loss ]]; then
  action "lose site-a"
  "$LAB" freeze site-a
  poll 25
  action "force-promote site-b"
  "$LAB" rbd site-b mirror image promote --force "$IMG"
  action "promoted site-b"
  poll 90
  action "return site-a"
  "$LAB" thaw site-a
  poll 60
  recover_site_a
  action "done"
  exit 0
fi
for pair in "site-a site-b" "site-b site-a"; do
  set -- $pair
  action "vr-secondary $1"
  poll 1
  action "demote $1"
  "$LAB" rbd "$1" mirror image demote "$IMG"
  poll 2
  action "promote $2"
  promote "$2"
  action "promoted $2"
  poll 10
  action "k8s-moved $1 $2"
  poll 60
  wait_state "$1" "$IMG" up+replaying 120
  poll 5
done

action "force-promote site-b"
"$LAB" rbd site-b mirror image promote --force "$IMG"
poll 70
recover_site_a # and back to the lab's starting point: site-a primary

action "create csi-vol-0009"
"$LAB" rbd site-a create --size 16M replicapool/csi-vol-0009
"$LAB" rbd site-a mirror image enable replicapool/csi-vol-0009 snapshot
wait_state site-b replicapool/csi-vol-0009 up+replaying 120
poll 5
action "disable csi-vol-0009"
"$LAB" rbd site-a mirror image disable replicapool/csi-vol-0009
poll 15
"$LAB" rbd site-a rm replicapool/csi-vol-0009 >/dev/null 2>&1 || true
action "done"

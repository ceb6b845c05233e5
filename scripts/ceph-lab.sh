#!/usr/bin/env bash
# ceph-lab.sh - two real Ceph sites (Debian's Pacific packages) on 127.0.0.1, mirroring pool
# `replicapool` both ways with one rbd-mirror daemon per site, for auditd's real-Ceph tests.
#
#   scripts/ceph-lab.sh up                  install packages if needed, start both sites,
#                                           mirror image csi-vol-0001 (primary on site-a)
#   scripts/ceph-lab.sh down                stop every daemon it started, remove the base dir
#   scripts/ceph-lab.sh stop-mirror SITE    SIGTERM that site's rbd-mirror (start-mirror: again)
#   scripts/ceph-lab.sh freeze SITE         a lost site: SIGSTOP its mon, mgr and rbd-mirror (not
#                                           its OSD: a frozen memstore OSD comes back with stuck
#                                           ops); thaw SITE: SIGCONT them, the site returns
#   scripts/ceph-lab.sh rbd SITE ARGS...    run rbd as client.admin against SITE
#
# Each site also gets a read-only cephx user `client.auditd` (caps in the README), whose
# ceph.conf and keyring are $BASE/SITE/auditd.conf and auditd.keyring.
# Knobs: AUDITD_CEPH_LAB (base dir, default /tmp/auditd-ceph-lab), AUDITD_CEPH_LAB_NO_APT=1.
set -Eeuo pipefail

BASE=${AUDITD_CEPH_LAB:-/tmp/auditd-ceph-lab}
POOL=replicapool
IMAGE=csi-vol-0001
SITES=(site-a site-b)
PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common rbd-mirror)
# The read-only caps auditd's probes need (checked by tests/sources/test_ceph_lab.py).
# The minimal caps that work on Pacific 16.2.15 (README, "Ceph access" has the experiments):
# `--verbose` opens each image and registers a watch on its header, which read-only OSD caps
# refuse; the daemon summary needs the two mon service commands.
AUDITD_CAPS=(
  mon 'profile rbd, allow command "service dump", allow command "service status"'
  osd "profile rbd pool=$POOL"
  mgr "profile rbd-read-only pool=$POOL"
)

say() { echo "[ceph-lab $(date +%H:%M:%S)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port() { # port SITE OFFSET: each site gets its own 100-port block
  # Below Linux's ephemeral range (32768-60999): an outgoing connection can never hold one of
  # these when a daemon binds it (a CI run once failed that way with 41700-41860).
  local base; [[ $1 == site-a ]] && base=31700 || base=31800
  echo $((base + $2))
}
conf() { echo "$BASE/$1/ceph.conf"; }
ceph_() { local s=$1; shift; timeout 60 ceph --cluster "$s" -c "$(conf "$s")" --connect-timeout 20 "$@"; }
rbd_() { local s=$1; shift; timeout 120 rbd --cluster "$s" -c "$(conf "$s")" "$@"; }

retry() { # retry SECONDS DESCRIPTION CMD...: poll until CMD succeeds
  local limit=$1 what=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then
      tail -n 15 "$BASE"/*/log/*.out "$BASE"/*/log/*.log 2>/dev/null >&2 || true
      die "timed out after ${limit}s: $what"
    fi
    sleep 1
  done
}

start() { # start SITE NAME CMD...: a daemon in its own session, pid recorded
  local s=$1 name=$2; shift 2
  mkdir -p "$BASE/$s/pids" "$BASE/$s/log"
  setsid "$@" </dev/null >>"$BASE/$s/log/$name.out" 2>&1 &
  echo $! >"$BASE/$s/pids/$name"
}

stop_pid() { # stop_pid FILE [SIGNAL]
  local f=$1 pid
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ ${AUDITD_CEPH_LAB_NO_APT:-0} == 1 ]] && die "missing packages: ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

site_up() {
  local s=$1 d=$BASE/$1 fsid p
  for p in $(port "$s" 0) $(port "$s" 1); do
    ! ss -Hltn "sport = :$p" | grep -q . || die "127.0.0.1:$p is in use (another lab running?)"
  done
  mkdir -p "$d"/{mon.a,mgr.x,osd.0,run,log,pids,home/.ceph}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$(port "$s" 1),v1:127.0.0.1:$(port "$s" 0)]
public_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_port_min = $(port "$s" 10)
ms_bind_port_max = $(port "$s" 60)
auth_allow_insecure_global_id_reclaim = false
keyring = $d/keyring
run_dir = $d/run
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
osd_objectstore = memstore
memstore_device_bytes = 1073741824
log_file = $d/log/\$name.log
[mon]
mon_data = $d/mon.a
[mgr]
mgr_data = $d/mgr.x
keyring = $d/mgr.x/keyring
[osd]
osd_data = $d/osd.0
keyring = $d/osd.0/keyring
[client.rbd-mirror.$s]
keyring = $d/rbd-mirror.keyring
CONF
  ceph-authtool --create-keyring "$d/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$d/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$d/mon.keyring" --import-keyring "$d/keyring" >/dev/null
  monmaptool --create --clobber --fsid "$fsid" --enable-all-features \
    --addv a "[v2:127.0.0.1:$(port "$s" 1),v1:127.0.0.1:$(port "$s" 0)]" "$d/monmap" >/dev/null
  ceph-mon --cluster "$s" -c "$d/ceph.conf" --mkfs -i a --monmap "$d/monmap" \
    --keyring "$d/mon.keyring" >>"$d/log/mkfs.out" 2>&1
  start "$s" mon ceph-mon --cluster "$s" -c "$d/ceph.conf" -i a -f
  retry 60 "$s mon" ceph_ "$s" quorum_status
  ceph_ "$s" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' -o "$d/mgr.x/keyring" >/dev/null
  start "$s" mgr ceph-mgr --cluster "$s" -c "$d/ceph.conf" -i x -f
  local uuid secret
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  echo "{\"cephx_secret\": \"$secret\"}" | ceph_ "$s" osd new "$uuid" -i - >/dev/null
  ceph-authtool --create-keyring "$d/osd.0/keyring" --name osd.0 --add-key "$secret" >/dev/null
  ceph-osd --cluster "$s" -c "$d/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$d/log/mkfs.out" 2>&1
  start "$s" osd ceph-osd --cluster "$s" -c "$d/ceph.conf" -i 0 -f
  retry 90 "$s osd up" osd_up "$s"
  ceph_ "$s" osd pool create "$POOL" 8 8 replicated >/dev/null 2>&1
  ceph_ "$s" osd pool set "$POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1
  retry 90 "$s pgs clean" pgs_clean "$s"
  rbd_ "$s" pool init "$POOL"
  rbd_ "$s" mirror pool enable --site-name "$s" "$POOL" image
  ceph_ "$s" auth get-or-create "client.rbd-mirror.$s" mon 'profile rbd-mirror' osd 'profile rbd' \
    -o "$d/rbd-mirror.keyring" >/dev/null
  # auditd's read-only user, and a ceph.conf for it that carries no admin keyring.
  ceph_ "$s" auth get-or-create client.auditd "${AUDITD_CAPS[@]}" -o "$d/auditd.keyring" >/dev/null
  sed -e "s#^keyring = $d/keyring#keyring = $d/auditd.keyring#" "$d/ceph.conf" >"$d/auditd.conf"
}

osd_up() { ceph_ "$1" osd dump -f json | json 'int(all(o["up"] for o in d["osds"]) and len(d["osds"]) > 0)' | grep -q 1; }
pgs_clean() {
  ceph_ "$1" pg stat -f json | json '(lambda s: int(s.get("num_pgs",0) > 0 and sum(x["num"] for x in s.get("num_pg_by_state",[]) if x["name"]=="active+clean") == s["num_pgs"]))(d.get("pg_summary", d))' | grep -q 1
}
mirror_registered() { ceph_ "$1" service dump -f json | json 'int(any(k != "summary" for k in d.get("services",{}).get("rbd-mirror",{}).get("daemons",{})))' | grep -q 1; }
image_state() { rbd_ "$1" mirror image status "$POOL/$IMAGE" --format json | json 'd["state"]' | grep -qx "$2"; }

start_mirror() {
  local s=$1
  # rbd-mirror reads its local cluster's config from $HOME/.ceph/<cluster>.conf, not from -c.
  ln -sfn ../../ceph.conf "$BASE/$s/home/.ceph/$s.conf"
  start "$s" rbd-mirror env HOME="$BASE/$s/home" rbd-mirror --cluster "$s" -c "$(conf "$s")" \
    --id "rbd-mirror.$s" -f
  retry 90 "$s rbd-mirror registered" mirror_registered "$s"
}

up() {
  local t0=$SECONDS
  [[ -d $BASE ]] && down
  mkdir -p "$BASE"
  packages
  for s in "${SITES[@]}"; do site_up "$s"; done
  rbd_ site-a mirror pool peer bootstrap create --site-name site-a "$POOL" >"$BASE/token-a"
  rbd_ site-b mirror pool peer bootstrap create --site-name site-b "$POOL" >"$BASE/token-b"
  rbd_ site-b mirror pool peer bootstrap import --site-name site-b --direction rx-tx "$POOL" "$BASE/token-a"
  rbd_ site-a mirror pool peer bootstrap import --site-name site-a --direction rx-tx "$POOL" "$BASE/token-b"
  for s in "${SITES[@]}"; do start_mirror "$s"; done
  # Snapshot-mode mirroring replicates only what a schedule snapshots: 1m on both sites, as a
  # VolumeReplicationClass with schedulingInterval 1m asks (whichever side is primary).
  for s in "${SITES[@]}"; do rbd_ "$s" mirror snapshot schedule add --pool "$POOL" 1m; done
  rbd_ site-a create --size 64M "$POOL/$IMAGE"
  rbd_ site-a mirror image enable "$POOL/$IMAGE" snapshot
  retry 180 "site-b replaying" image_state site-b up+replaying
  retry 60 "site-a stopped" image_state site-a up+stopped
  touch "$BASE/.up"
  say "up in $((SECONDS - t0))s"
}

down() {
  [[ -d $BASE ]] || return 0
  for name in rbd-mirror osd mgr mon; do
    for s in "${SITES[@]}"; do stop_pid "$BASE/$s/pids/$name"; done
  done
  rm -rf --one-file-system -- "$BASE"
  say "down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  stop-mirror) stop_pid "$BASE/${2:?site}/pids/rbd-mirror" ;;
  freeze | thaw)
    sig=$([[ $1 == freeze ]] && echo STOP || echo CONT)
    for name in mon mgr rbd-mirror; do kill -s "$sig" "$(cat "$BASE/${2:?site}/pids/$name")"; done ;;
  start-mirror) start_mirror "${2:?site}" ;;
  rbd) s=${2:?site}; shift 2; rbd_ "$s" "$@" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

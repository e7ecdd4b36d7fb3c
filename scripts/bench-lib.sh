# Shared by the point-in-time benchmarks (sourced): process cleanup, free loopback ports,
# and one etcd 3.5.1 member on 127.0.0.1. Needs $E (etcd's directory) and $WORK.
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_etcd [SNAPSHOT]: one member in $WORK/etcd (restored from SNAPSHOT with etcdutl when
# given), 8 GiB quota; sets EP and ETCD (its pid) once it answers.
start_etcd() {
  local cp pp
  cp=$(free_port); pp=$(free_port)
  if [ -n "${1:-}" ]; then
    "$E/etcdutl" snapshot restore "$1" --name p --data-dir "$WORK/etcd" \
      --initial-cluster "p=http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      >"$WORK/etcdutl.log" 2>&1
  fi
  "$E/etcd" --name p --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "p=http://127.0.0.1:$pp" --quota-backend-bytes=8589934592 \
    --log-level=warn >"$WORK/etcd.log" 2>&1 &
  ETCD=$!
  PIDS+=("$ETCD")
  EP="http://127.0.0.1:$cp"
  for _ in $(seq 100); do "$E/etcdctl" --endpoints "$EP" endpoint health >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "etcd did not answer on $EP (log: $WORK/etcd.log)" >&2
  return 1
}

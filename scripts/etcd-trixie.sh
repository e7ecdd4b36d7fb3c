#!/usr/bin/env bash
# Fetches a later etcd 3.5 (Debian trixie's etcd-server/etcd-client, 3.5.16, which has
# `etcdutl --bump-revision`) without installing anything system-wide: apt-get download against
# a trixie source list kept in a temp dir, then dpkg-deb -x into a cache dir.
# Prints the directory holding etcd, etcdctl and etcdutl. Idempotent.
set -euo pipefail
cache="${LIFEBOAT_ETCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat}/etcd-trixie"
bin="$cache/usr/bin"
if [ -x "$bin/etcd" ] && [ -x "$bin/etcdutl" ] && [ -x "$bin/etcdctl" ]; then
  echo "$bin"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/preferences.d" "$cache"
cat > "$tmp/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
LIST
aptopts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "Dir::Etc::Preferences=-"
  -o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d" -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${aptopts[@]}" -qq update >&2
(cd "$tmp" && apt-get "${aptopts[@]}" -qq download etcd-server etcd-client >&2)
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$cache"; done
[ -x "$bin/etcdutl" ] || { echo "etcd-trixie: no etcdutl in the trixie packages" >&2; exit 1; }
echo "$bin"

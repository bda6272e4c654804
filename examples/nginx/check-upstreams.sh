#!/bin/sh
# Checks a rendered nginx upstreams file before svcreg installs it: builds a
# throwaway nginx.conf that includes the staged file and runs nginx -t on it.
# Usage: check-upstreams.sh STAGED_FILE [UPSTREAM...]
# Each UPSTREAM named is proxied to, so that nginx checks it has servers.
set -eu
staged=$1
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
{
	echo "pid $dir/nginx.pid; error_log stderr; events {}"
	echo "http { access_log off; include $staged;"
	for u in "$@"; do
		echo "  server { listen 127.0.0.1:1; server_name $u; location / { proxy_pass http://$u; } }"
	done
	echo "}"
} > "$dir/nginx.conf"
# Not exec'd: the shell stays to run its EXIT trap, which removes $dir
# (set -e still exits with nginx's status when it fails).
nginx -t -q -p "$dir" -c "$dir/nginx.conf"

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
built=$(nginx -V 2>&1)
{
	echo "pid $dir/nginx.pid; error_log stderr; events {}"
	# nginx makes its temporary directories and, run as root, gives them
	# to its user (nobody here): its compiled-in ones are the running
	# nginx's, whose workers could then not buffer to them.
	# (A module built without has no such directive.)
	echo "http { access_log off;"
	for p in client_body proxy fastcgi uwsgi scgi; do
		case $built in *--without-http_${p}_module*) continue ;; esac
		echo "  ${p}_temp_path $dir/$p;"
	done
	echo "  include $staged;"
	for u in "$@"; do
		echo "  server { listen 127.0.0.1:1; server_name $u; location / { proxy_pass http://$u; } }"
	done
	echo "}"
} > "$dir/nginx.conf"
# Not exec'd: the shell stays to run its EXIT trap, which removes $dir
# (set -e still exits with nginx's status when it fails).
nginx -t -q -p "$dir" -c "$dir/nginx.conf"

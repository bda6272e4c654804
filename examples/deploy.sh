#!/bin/sh
# A deploy step: render the nginx upstreams from the registry once, check,
# install and reload, and stop the deploy if that fails.
#   SVCREG_URL=... SVCREG_USERNAME=... SVCREG_API_KEY=... examples/deploy.sh
#   FIRST_DEPLOY=1 examples/deploy.sh   # before nginx runs: install, reload nothing
set -u
svcreg template --once ${FIRST_DEPLOY:+--no-reload} --once-timeout 60s --config /etc/svcreg/nginx.toml
status=$?
case $status in
0) echo "nginx upstreams are up to date" ;;
3) echo "the renderer's config or a template is invalid, or the registry refused its credentials (see the message above)" >&2 ;;
4) echo "no full sync with the registry within 60s: it could not be reached, or answered with errors (see the message above)" >&2 ;;
5) echo "a template failed to render, or min_instances refused an empty upstream; the old file is kept" >&2 ;;
6) echo "nginx refused the rendered file; the old file is kept" >&2 ;;
7) echo "the rendered file could not be installed" >&2 ;;
8) echo "the nginx reload failed; the previous file was restored and reloaded (on a first deploy the new file stays: start nginx, or use FIRST_DEPLOY=1)" >&2 ;;
*) echo "svcreg template failed ($status)" >&2 ;;
esac
exit $status

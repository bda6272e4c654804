// Package examples holds the example templates, renderer configurations,
// systemd units and scripts. The nginx upstreams template is embedded for
// `svcreg demo`.
package examples

import _ "embed"

// NginxUpstreams is nginx/upstreams.tmpl.
//
//go:embed nginx/upstreams.tmpl
var NginxUpstreams string

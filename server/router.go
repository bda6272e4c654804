package server

import (
	"net/http"
	"strings"
)

// route is one API endpoint.
type route struct {
	method  string
	pattern string
	name    string // the route's label in logs and metrics
	// handle answers the request, or returns the error to answer with: a
	// *fault as it is, any other error as faultFor maps it.
	handle func(w http.ResponseWriter, rq *request) error
}

// router matches raw paths the way the original's Express 3 routes did
// (spec §2.1). It never cleans a path: "//" is meaningful in configuration
// ids.
type router struct {
	routes   []route
	patterns [][]string // each route's pattern split into segments
}

func newRouter(routes []route) *router {
	rt := &router{routes: routes}
	for _, r := range routes {
		rt.patterns = append(rt.patterns, strings.Split(strings.TrimPrefix(r.pattern, "/"), "/"))
	}
	return rt
}

// match finds the route for method and the raw path under /v1.0, and
// returns it with its raw parameters and the path without the tenant
// prefix (which is not a parameter).
func (rt *router) match(method, path string) (_ *route, params []string, routePath string) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if !strings.HasPrefix(path, "/") {
		return nil, nil, ""
	}
	for _, prefixed := range []bool{false, true} {
		p := path[1:]
		if prefixed {
			tenant, rest, ok := strings.Cut(p, "/")
			if !ok || tenant == "" {
				return nil, nil, ""
			}
			p = rest
		}
		for i := range rt.routes {
			if rt.routes[i].method != method {
				continue
			}
			if params, ok := matchSegments(rt.patterns[i], p); ok {
				return &rt.routes[i], params, "/" + p
			}
		}
	}
	return nil, nil, ""
}

// matchSegments matches a path (without its leading slash) against pattern
// segments.
func matchSegments(pattern []string, path string) ([]string, bool) {
	var params []string
	for i, seg := range pattern {
		if seg == "*" {
			return append(params, path), true
		}
		last := i == len(pattern)-1
		var part string
		if last {
			part = strings.TrimSuffix(path, "/")
			if strings.Contains(part, "/") {
				return nil, false
			}
		} else {
			var ok bool
			part, path, ok = strings.Cut(path, "/")
			if !ok {
				return nil, false
			}
		}
		if strings.HasPrefix(seg, ":") {
			if part == "" {
				return nil, false
			}
			params = append(params, part)
		} else if !strings.EqualFold(seg, part) {
			return nil, false
		}
	}
	return params, true
}

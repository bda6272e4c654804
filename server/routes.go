package server

// routes is the API, side by side with spec §2.1. Each route is served under
// /v1.0 both without and with a /{tenantId} prefix; the un-prefixed form is
// tried first. Paths match case-insensitively with an optional trailing
// slash; ":name" is one segment and "*" the rest of the path, slashes and
// a trailing slash included.
func (s *Server) routes() []route {
	return []route{
		{"GET", "/limits", "limits", s.handleLimits},
		{"POST", "/limits", "limits", s.handleLimits},

		{"GET", "/events", "events.list", s.handleEvents},

		{"GET", "/services", "services.list", s.handleServicesList},
		{"GET", "/services/:serviceId", "services.get", s.handleServiceGet},
		{"POST", "/services", "services.create", s.handleServiceCreate},
		{"PUT", "/services/:serviceId", "services.update", s.handleServiceUpdate},
		{"DELETE", "/services/:serviceId", "services.delete", s.handleServiceDelete},
		{"POST", "/services/:serviceId/heartbeat", "services.heartbeat", s.handleHeartbeat},

		{"GET", "/configuration", "configuration.list", s.handleConfigList},
		{"GET", "/configuration/*", "configuration.get", s.handleConfigGet},
		{"PUT", "/configuration/*", "configuration.set", s.handleConfigSet},
		{"DELETE", "/configuration/*", "configuration.delete", s.handleConfigDelete},
	}
}

package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// configIDParam decodes and checks the configuration id of a PUT or DELETE.
func configIDParam(rq *request) (string, *fault) {
	id, f := decodeParam(rq.params[0])
	if f != nil {
		return "", f
	}
	if msg := checkConfigID(id); msg != "" {
		return "", invalidParam("configurationId", msg)
	}
	return id, nil
}

// handleConfigList is GET /configuration (spec §7.8, list all).
func (s *Server) handleConfigList(w http.ResponseWriter, rq *request) error {
	limit, marker, f := parsePage(rq.query)
	if f != nil {
		return f
	}
	return s.listConfig(w, rq, "", limit, marker)
}

// handleConfigGet is GET /configuration/{rest}: list all when rest is
// empty, a namespace list when it ends in "/", else a single get
// (spec §7.8).
func (s *Server) handleConfigGet(w http.ResponseWriter, rq *request) error {
	rest, f := decodeParam(rq.params[0]) // first: the route decodes it (spec §2.1)
	if f != nil {
		return f
	}
	limit, marker, f := parsePage(rq.query)
	if f != nil {
		return f
	}
	switch {
	case rest == "":
		return s.listConfig(w, rq, "", limit, marker)
	case strings.HasSuffix(rest, "/"):
		// The namespace is a plain string prefix, not validated (spec §7.8).
		return s.listConfig(w, rq, strings.TrimSuffix("/"+rest, "/"), limit, marker)
	}
	if msg := checkConfigID(rest); msg != "" {
		return invalidParam("configurationId", msg)
	}
	cv, err := s.store.Config(rq.r.Context(), rq.tenant, rest)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cv)
	return nil
}

func (s *Server) listConfig(w http.ResponseWriter, rq *request, prefix string, limit int, marker string) error {
	return serveList(s, w, rq, limit, marker, func(ctx context.Context) (store.Page[registry.ConfigValue], error) {
		return s.store.Configs(ctx, rq.tenant, store.ConfigQuery{Prefix: prefix, Marker: marker, Limit: limit})
	})
}

// handleConfigSet is PUT /configuration/{id} (spec §7.9).
func (s *Server) handleConfigSet(w http.ResponseWriter, rq *request) error {
	id, f := configIDParam(rq)
	if f != nil {
		return f
	}
	value, f := validateConfigBody(rq.body)
	if f != nil {
		return f
	}
	if err := s.store.SetConfig(rq.r.Context(), rq.tenant, id, value); err != nil {
		return err
	}
	w.Header().Set("Location", rq.objectURL("/configuration/"+id))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleConfigDelete is DELETE /configuration/{id} (spec §7.10).
func (s *Server) handleConfigDelete(w http.ResponseWriter, rq *request) error {
	id, f := configIDParam(rq)
	if f != nil {
		return f
	}
	if err := s.store.DeleteConfig(rq.r.Context(), rq.tenant, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

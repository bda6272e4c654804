package server

import (
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
func (s *Server) handleConfigList(w http.ResponseWriter, rq *request) {
	limit, marker, f := parsePage(rq.query)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	s.listConfig(w, rq, "", limit, marker)
}

// handleConfigGet is GET /configuration/{rest}: list all when rest is
// empty, a namespace list when it ends in "/", else a single get
// (spec §7.8).
func (s *Server) handleConfigGet(w http.ResponseWriter, rq *request) {
	limit, marker, f := parsePage(rq.query)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	rest, f := decodeParam(rq.params[0])
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	switch {
	case rest == "":
		s.listConfig(w, rq, "", limit, marker)
	case strings.HasSuffix(rest, "/"):
		// The namespace is a plain string prefix, not validated (spec §7.8).
		s.listConfig(w, rq, strings.TrimSuffix("/"+rest, "/"), limit, marker)
	default:
		if msg := checkConfigID(rest); msg != "" {
			s.writeFault(w, rq, invalidParam("configurationId", msg))
			return
		}
		cv, err := s.store.Config(rq.r.Context(), rq.tenant, rest)
		if err != nil {
			s.writeFault(w, rq, s.faultFor(rq.txnID, err))
			return
		}
		writeJSON(w, http.StatusOK, cv)
	}
}

func (s *Server) listConfig(w http.ResponseWriter, rq *request, prefix string, limit int, marker string) {
	page, err := s.store.Configs(rq.r.Context(), rq.tenant, store.ConfigQuery{Prefix: prefix, Marker: marker, Limit: limit})
	if err != nil {
		s.writeFault(w, rq, s.faultFor(rq.txnID, err))
		return
	}
	setFeedMarker(w, page.Marker)
	writeList[registry.ConfigValue](w, rq, page.Values, limit, marker, page.Next)
}

// handleConfigSet is PUT /configuration/{id} (spec §7.9).
func (s *Server) handleConfigSet(w http.ResponseWriter, rq *request) {
	id, f := configIDParam(rq)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	value, f := validateConfigBody(rq.body)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	if err := s.store.SetConfig(rq.r.Context(), rq.tenant, id, value); err != nil {
		s.writeFault(w, rq, s.faultFor(rq.txnID, err))
		return
	}
	w.Header().Set("Location", rq.objectURL("/configuration/"+id))
	w.WriteHeader(http.StatusNoContent)
}

// handleConfigDelete is DELETE /configuration/{id} (spec §7.10).
func (s *Server) handleConfigDelete(w http.ResponseWriter, rq *request) {
	id, f := configIDParam(rq)
	if f != nil {
		s.writeFault(w, rq, f)
		return
	}
	if err := s.store.DeleteConfig(rq.r.Context(), rq.tenant, id); err != nil {
		s.writeFault(w, rq, s.faultFor(rq.txnID, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// servicePath is the object path of a service, for Location.
func servicePath(id string) string { return "/services/" + id }

// serviceIDParam decodes and checks the :serviceId parameter (spec §7.3
// step 1).
func serviceIDParam(rq *request) (string, *fault) {
	id, f := decodeParam(rq.params[0])
	if f != nil {
		return "", f
	}
	if msg := checkServiceID(id); msg != "" {
		return "", invalidParam("serviceId", msg)
	}
	return id, nil
}

// checkTag is the one rule of a tag, in a service and in ?tag= (design item
// 8): 1..55 characters, no control characters.
func checkTag(s string) string {
	if msg := lengthMessage(s, 1, 55); msg != "" {
		return msg
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "Invalid characters"
	}
	return ""
}

// checkTagQuery is the rule for ?tag= (design item 8): any tag a service may
// carry.
func checkTagQuery(q query) (string, *fault) {
	vs := q.values("tag")
	if len(vs) > 1 {
		return "", invalidParam("tag", "Not a string")
	}
	if msg := checkTag(vs[0]); msg != "" {
		return "", invalidParam("tag", msg)
	}
	return vs[0], nil
}

// handleServicesList is GET /services[?tag=T] (spec §7.2).
func (s *Server) handleServicesList(w http.ResponseWriter, rq *request) error {
	limit, marker, f := parsePage(rq.query)
	if f != nil {
		return f
	}
	q := store.ServiceQuery{Marker: marker, Limit: limit}
	if _, ok := rq.query.get("tag"); ok {
		tag, f := checkTagQuery(rq.query)
		if f != nil {
			return f
		}
		q.Tag = &tag
	}
	return serveList(s, w, rq, limit, marker, func(ctx context.Context) (store.Page[registry.Service], error) {
		return s.store.Services(ctx, rq.tenant, q)
	})
}

// handleServiceGet is GET /services/{id} (spec §7.3).
func (s *Server) handleServiceGet(w http.ResponseWriter, rq *request) error {
	id, f := serviceIDParam(rq)
	if f != nil {
		return f
	}
	svc, err := s.store.Service(rq.r.Context(), rq.tenant, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, svc)
	return nil
}

type tokenBody struct {
	Token string `json:"token"`
}

// handleServiceCreate is POST /services (spec §7.4).
func (s *Server) handleServiceCreate(w http.ResponseWriter, rq *request) error {
	ns, f := validateNewService(rq.body)
	if f != nil {
		return f
	}
	token, err := s.store.CreateService(rq.r.Context(), rq.tenant, ns)
	if errors.Is(err, store.ErrServiceExists) {
		msg := "Service with id " + ns.ID + " already exists."
		return &fault{Status: http.StatusBadRequest, Type: faultServiceExists, Message: msg, Details: msg}
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", rq.objectURL(servicePath(ns.ID)))
	writeJSON(w, http.StatusCreated, tokenBody{token})
	return nil
}

// handleServiceUpdate is PUT /services/{id} (spec §7.5).
func (s *Server) handleServiceUpdate(w http.ResponseWriter, rq *request) error {
	id, f := serviceIDParam(rq)
	if f != nil {
		return f
	}
	u, f := validateServiceUpdate(rq.body, id)
	if f != nil {
		return f
	}
	if err := s.store.UpdateService(rq.r.Context(), rq.tenant, id, u); err != nil {
		return err
	}
	w.Header().Set("Location", rq.objectURL(servicePath(id)))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleServiceDelete is DELETE /services/{id} (spec §7.6).
func (s *Server) handleServiceDelete(w http.ResponseWriter, rq *request) error {
	id, f := serviceIDParam(rq)
	if f != nil {
		return f
	}
	if err := s.store.DeleteService(rq.r.Context(), rq.tenant, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleHeartbeat is POST /services/{id}/heartbeat (spec §7.7). An id no
// service can have (spec §5's rule) is a 404, as an unknown one, without
// asking the store: the store would keep what it learned of each (the etcd
// store's cache). Heartbeats count against no rate limit of the server's;
// the etcd store limits those that move a service from another node
// (store.RateLimitError).
func (s *Server) handleHeartbeat(w http.ResponseWriter, rq *request) error {
	id, f := decodeParam(rq.params[0]) // first: the route decodes it (spec §2.1)
	if f != nil {
		return f
	}
	token, f := validateHeartbeat(rq.body)
	if f != nil {
		return f
	}
	if checkServiceID(id) != "" {
		// Repeated cut, as a fault repeats any value of the request: the
		// path is as long as the header limit lets it be.
		return &store.NotFoundError{Kind: store.KindService, Key: echoed(id)}
	}
	next, err := s.store.Heartbeat(rq.r.Context(), rq.tenant, id, token)
	if err != nil {
		return err
	}
	s.metrics.heartbeats.Inc()
	writeJSON(w, http.StatusOK, tokenBody{next})
	return nil
}

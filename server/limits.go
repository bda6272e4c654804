package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/svcreg/svcreg/registry"
)

// rateRule is one rule of the array a proxy POSTs to /limits (spec §7.1).
type rateRule struct {
	Method    string `json:"method"`
	PathRegex string `json:"path_regex"`
	Limit     int    `json:"limit"`
	Used      int    `json:"used"`
	Period    int    `json:"period"`
}

// handleLimits is GET /limits, and POST /limits as the original's proxy
// sent it: with an array of rate-limit rules as the body (spec §7.1, §6.6).
func (s *Server) handleLimits(w http.ResponseWriter, rq *request) error {
	acct := rq.account
	rules := []rateRule{{Method: "GET", PathRegex: "/.*", Limit: s.cfg.RateLimit, Used: rq.rateUsed, Period: 86400}}
	if rq.r.Method == http.MethodPost {
		rules[0].Used = s.rate.used(rq.tenant)
		var sent []rateRule
		if len(rq.body.raw) > 0 && rq.body.raw[0] == '[' && json.Unmarshal(rq.body.raw, &sent) == nil {
			rules = sent
		}
	}
	out := registry.Limits{
		Resource: map[string]int{"service": acct.Limits.Services, "configuration_value": acct.Limits.ConfigValues},
		Rate:     map[string]registry.RateLimit{},
	}
	for _, r := range rules {
		out.Rate[r.PathRegex] = registry.RateLimit{Limit: r.Limit, Used: r.Used, Window: fmt.Sprintf("%.1f hours", float64(r.Period)/3600)}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

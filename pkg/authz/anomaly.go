package authz

import (
	"context"
	"errors"
	"net/netip"
	"strconv"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// Anomaly notices a session used unlike a person uses one. The zero value
// notices nothing.
type Anomaly struct {
	// MaxRate is the most Checks per minute one session may make through
	// this replica (a sliding 60-second window); 0 is off. A script
	// replaying a stolen session usually runs far faster than its owner.
	MaxRate int
	// Action is what exceeding it does: log (allow, one event per minute),
	// deny (429 while over the rate; the session is kept) or revoke (401,
	// the session deleted).
	Action PolicyAction
	// CountryChange compares the client's country with the one the
	// session was created in (Options.GeoIP, device.ip); CountryAction is
	// what another country does: log (allow, one event per new country),
	// deny (401; the session is kept) or revoke (401, the session deleted).
	// A country GeoIP does not know is no change.
	CountryChange bool
	CountryAction PolicyAction
}

// Countries names the country of an address (ISO 3166-1 alpha-2), or ""
// when it does not know it. *geoip.DB is one.
type Countries interface {
	Country(netip.Addr) string
}

func (a Anomaly) on(geo Countries) bool { return a.MaxRate > 0 || a.CountryChange && geo != nil }

const (
	reasonRateAnomaly   = "session over its request rate"
	reasonCountryChange = "client country differs from the session's"
)

// tooMany answers a Check refused for the session's rate; Retry-After is
// the window.
var tooMany = denied(codes.ResourceExhausted, typev3.StatusCode_TooManyRequests, `{"error":"rate_anomaly"}`, header("retry-after", "60"))

// anomaly applies the per-session rate and the country check to a request
// whose session resolved and passed its binding. refused is true when the
// answer is resp.
func (s *Server) anomaly(ctx context.Context, attrs *authv3.AttributeContext, h headers, ref string, o origin, rule int) (resp *authv3.CheckResponse, v Verdict, refused bool) {
	a := s.o.Anomaly
	now := s.o.Now()
	var client netip.Addr
	checkCountry := a.CountryChange && s.o.GeoIP != nil && o.country != ""
	if checkCountry {
		var ok bool
		if client, ok = clientAddr(attrs, h, s.o.XFFTrustedHops); !ok {
			// Unknown addresses are the binding's business.
			checkCountry = false
		}
	}
	var rate float64
	var country string
	over, first, moved, newCountry := false, false, false, false
	tracked := s.seen.with(ref, now, func(e *seen, minute int64) {
		if a.MaxRate > 0 {
			rate = e.rate(now, minute)
			over = rate > float64(a.MaxRate)
			if over && e.rateLogged != minute {
				e.rateLogged, first = minute, true
			}
		}
		if checkCountry {
			// One lookup per new client address of the session.
			if client != e.client {
				e.client, e.clientCountry = client, s.o.GeoIP.Country(client)
			}
			country = e.clientCountry
			moved = country != "" && country != o.country
			if moved && country != e.countryLogged {
				e.countryLogged, newCountry = country, true
			}
		}
	})
	if checkCountry && !tracked {
		// No room to remember the session: its rate goes uncounted, but
		// the country is still checked, without the lookup cache.
		country = s.o.GeoIP.Country(client)
		moved = country != "" && country != o.country
		newCountry = moved
	}
	if moved {
		if resp, v, refused := s.countryChanged(ctx, attrs, h, ref, o.country, country, newCountry, rule); refused {
			return resp, v, true
		}
	}
	if !over {
		return nil, Verdict{}, false
	}
	if first {
		s.o.Log.Warn("check: session over its request rate", "session_ref", ref, "rate_per_minute", int(rate), "max_rate", a.MaxRate, "action", a.Action.String())
		s.record(h, events.Event{Type: events.RateAnomaly, SessionRef: ref, Details: map[string]string{
			"rate_per_minute": strconv.Itoa(int(rate)), "max_rate": strconv.Itoa(a.MaxRate), "action": a.Action.String()}})
	}
	switch a.Action {
	case PolicyDeny:
		return tooMany, verdict(DecisionRateAnomaly, reasonRateAnomaly, rule), true
	case PolicyRevoke:
		if resp, v, failed := s.revoke(ctx, h, ref, "rate_anomaly", reasonRateAnomaly, rule); failed {
			return resp, v, true
		}
		return s.unauthenticated(attrs.GetRequest().GetHttp(), h), verdict(DecisionRateAnomaly, reasonRateAnomaly, rule), true
	}
	return nil, Verdict{}, false
}

// revoke deletes a session a policy ended and records who ended it.
// failed is true when the store could not: the answer is then resp, a 503
// that does not claim a revocation that did not happen (or the caller went
// away).
func (s *Server) revoke(ctx context.Context, h headers, ref, by, reason string, rule int) (resp *authv3.CheckResponse, v Verdict, failed bool) {
	sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	err := s.o.Sessions.Delete(sctx, ref)
	cancel()
	switch {
	case err == nil:
		s.record(h, events.Event{Type: events.Revoke, SessionRef: ref, Details: map[string]string{"by": by, "reason": reason}})
	case errors.Is(err, session.ErrNotFound):
	case ctx.Err() == context.Canceled:
		return s.resp.unavailable, verdict(DecisionCanceled, "caller canceled", rule), true
	default:
		s.o.Log.Warn("check: revoke by "+by+": session store unavailable", "session_ref", ref, "err", err)
		return s.resp.unavailable, verdict(DecisionUnavailable, "session store unavailable", rule), true
	}
	return nil, Verdict{}, false
}

// countryChanged applies CountryAction to a session used from country
// instead of its own; record says whether this replica has not recorded
// that country for the session yet (log records each new one once; deny
// and revoke record every refusal).
func (s *Server) countryChanged(ctx context.Context, attrs *authv3.AttributeContext, h headers, ref, own, country string, record bool, rule int) (resp *authv3.CheckResponse, v Verdict, refused bool) {
	action := s.o.Anomaly.CountryAction
	if record || action != PolicyLog {
		s.o.Log.Warn("check: session used from another country", "session_ref", ref, "session_country", own, "client_country", country, "action", action.String())
		s.record(h, events.Event{Type: events.CountryChange, SessionRef: ref, Details: map[string]string{
			"session_country": own, "client_country": country, "action": action.String()}})
	}
	switch action {
	case PolicyDeny:
	case PolicyRevoke:
		if resp, v, failed := s.revoke(ctx, h, ref, "country_change", reasonCountryChange, rule); failed {
			return resp, v, true
		}
	default:
		return nil, Verdict{}, false
	}
	return s.unauthenticated(attrs.GetRequest().GetHttp(), h), verdict(DecisionCountryChange, reasonCountryChange, rule), true
}

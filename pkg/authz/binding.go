package authz

import (
	"context"
	"fmt"
	"net/netip"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// Binding ties a session to where it was created: the User-Agent and the
// client network the login service reported in device.user_agent and
// device.ip. A stolen session ID then only works from a client that looks
// like the victim's. The zero value binds nothing.
type Binding struct {
	// UserAgent requires the request's User-Agent to equal the session's
	// with every digit and dot removed, so a browser update keeps the
	// session. A session created without a user agent is not UA-bound.
	UserAgent bool
	// IPv4Bits and IPv6Bits require the client address to lie in the
	// network of that many leading bits around the session's device.ip;
	// 0 leaves a family unbound. A session created without device.ip is not
	// network-bound; one whose device.ip is not an address never matches.
	IPv4Bits, IPv6Bits int
	// Action is what a mismatch does.
	Action PolicyAction
}

// PolicyAction is what a binding mismatch does.
type PolicyAction uint8

const (
	PolicyLog    PolicyAction = iota // allow, and log the mismatch
	PolicyDeny                       // 401 (or the login redirect); the session is kept
	PolicyRevoke                     // 401 and the session deleted
)

var policyActionNames = []string{PolicyLog: "log", PolicyDeny: "deny", PolicyRevoke: "revoke"}

func (a PolicyAction) String() string {
	if int(a) < len(policyActionNames) {
		return policyActionNames[a]
	}
	return "unknown"
}

// ParsePolicyAction reads log, deny or revoke.
func ParsePolicyAction(s string) (PolicyAction, error) {
	for i, n := range policyActionNames {
		if s == n {
			return PolicyAction(i), nil
		}
	}
	return 0, fmt.Errorf("must be log, deny or revoke, got %q", s)
}

func (b Binding) on() bool { return b.UserAgent || b.IPv4Bits > 0 || b.IPv6Bits > 0 }

// origin is where a session was created, as its record says; decoded once
// per session version with its token (see sign).
type origin struct {
	userAgent string     // "" = not UA-bound
	ip        netip.Addr // invalid = no address recorded, or ipBad
	ipBad     bool       // device.ip is set but is not an address
	country   string     // ip's country with GeoIP on; "" = unknown
}

func (s *Server) originOf(d session.Device) origin {
	o := origin{userAgent: d.UserAgent}
	if d.IP != "" {
		o.ip, o.ipBad = parseClientAddr(d.IP)
		o.ipBad = !o.ipBad
	}
	if s.o.GeoIP != nil && o.ip.IsValid() {
		o.country = s.o.GeoIP.Country(o.ip)
	}
	return o
}

// Binding mismatch reasons: the Verdict's Reason, fixed strings.
const (
	reasonUAMismatch      = "user agent differs from the session's"
	reasonNetworkMismatch = "client network differs from the session's"
	reasonClientUnknown   = "client address unknown"
	reasonOriginBad       = "session's device.ip is not an address"
)

// mismatch says how a request fails the session's binding, or "" when it
// does not. It allocates nothing.
func (s *Server) mismatch(attrs *authv3.AttributeContext, h headers, o origin) (reason string, client netip.Addr) {
	b := s.o.Binding
	if b.UserAgent && o.userAgent != "" {
		ua, n := h.get("user-agent")
		if n != 1 || !sameSansVersions(ua, o.userAgent) {
			return reasonUAMismatch, client
		}
	}
	if b.IPv4Bits == 0 && b.IPv6Bits == 0 || !o.ip.IsValid() && !o.ipBad {
		return "", client
	}
	if o.ipBad {
		return reasonOriginBad, client
	}
	bits := b.IPv6Bits
	if o.ip.Is4() {
		bits = b.IPv4Bits
	}
	if bits == 0 {
		return "", client
	}
	client, ok := clientAddr(attrs, h, s.o.XFFTrustedHops)
	if !ok {
		return reasonClientUnknown, client
	}
	net, _ := o.ip.Prefix(bits)
	if client.BitLen() != o.ip.BitLen() || !net.Contains(client) {
		return reasonNetworkMismatch, client
	}
	return "", client
}

// bind applies the session binding to a request whose session resolved.
// refused is true when the answer is resp: a 401 (or the login redirect),
// or what revoking the session met.
func (s *Server) bind(ctx context.Context, attrs *authv3.AttributeContext, h headers, ref string, o origin, rule int) (resp *authv3.CheckResponse, v Verdict, refused bool) {
	reason, client := s.mismatch(attrs, h, o)
	if reason == "" {
		return nil, Verdict{}, false
	}
	action := s.o.Binding.Action
	if action == PolicyLog {
		s.noteMismatch(h, ref, reason, o, client)
		return nil, Verdict{}, false
	}
	s.recordMismatch(h, ref, reason, action, o, client)
	if action == PolicyRevoke {
		if resp, v, failed := s.revoke(ctx, h, ref, "binding", reason, rule); failed {
			return resp, v, true
		}
	}
	return s.unauthenticated(attrs.GetRequest().GetHttp(), h), verdict(DecisionBindingMismatch, reason, rule), true
}

// recordMismatch logs a refused mismatch and records its event: networks
// as prefixes of the bound length, never the user agents themselves.
func (s *Server) recordMismatch(h headers, ref, reason string, action PolicyAction, o origin, client netip.Addr) {
	details := map[string]string{"reason": reason, "action": action.String()}
	attrs := []any{"session_ref", ref, "reason", reason, "action", action.String()}
	if reason == reasonNetworkMismatch {
		details["session_network"], details["client_network"] = s.network(o.ip).String(), s.network(client).String()
		attrs = append(attrs, "session_network", details["session_network"], "client_network", details["client_network"])
		s.addCountries(details, o, client)
	}
	s.o.Log.Warn("check: session binding mismatch", attrs...)
	s.record(h, events.Event{Type: events.BindingMismatch, SessionRef: ref, Details: details})
}

// mismatchBits number the reasons a session's log-mode mismatches were
// recorded for (seen.mismatches).
var mismatchBits = map[string]uint8{reasonUAMismatch: 1, reasonClientUnknown: 2, reasonOriginBad: 4}

// noteMismatch records a mismatch that is only logged, once per change
// instead of once per request: a user who moved to another network would
// otherwise add an event to every request. A session seen from a network
// other than the last one recorded (at first, its own) is a
// network_change event with both; any other reason is a binding_mismatch
// event the first time this replica sees it for the session.
func (s *Server) noteMismatch(h headers, ref, reason string, o origin, client netip.Addr) {
	from, to := s.network(o.ip), s.network(client)
	fresh := false
	tracked := s.seen.with(ref, s.o.Now(), func(e *seen, _ int64) {
		if reason != reasonNetworkMismatch {
			bit := mismatchBits[reason]
			fresh, e.mismatches = e.mismatches&bit == 0, e.mismatches|bit
			return
		}
		if e.network.IsValid() {
			from = e.network
		}
		fresh, e.network = from != to, to
	})
	// A session this replica has no room to remember is recorded every
	// time: too many events rather than none.
	if !fresh && tracked {
		return
	}
	if reason != reasonNetworkMismatch {
		s.recordMismatch(h, ref, reason, PolicyLog, o, client)
		return
	}
	s.o.Log.Warn("check: session seen from a new network", "session_ref", ref, "old_network", from.String(), "new_network", to.String())
	details := map[string]string{"old_network": from.String(), "new_network": to.String(), "session_network": s.network(o.ip).String()}
	s.addCountries(details, o, client)
	s.record(h, events.Event{Type: events.NetworkChange, SessionRef: ref, Details: details})
}

// network is the bound network around a, by its family's prefix length (the
// full address when that family is not bound).
func (s *Server) network(a netip.Addr) netip.Prefix {
	bits := s.o.Binding.IPv6Bits
	if a.Is4() {
		bits = s.o.Binding.IPv4Bits
	}
	if bits == 0 {
		bits = a.BitLen()
	}
	p, _ := a.Prefix(bits)
	return p
}

// sameSansVersions reports whether a and b are equal once every digit and
// dot is removed: "Chrome/120.0.6099.109" and "Chrome/121.0.6167.85" are the
// same browser. It allocates nothing.
func sameSansVersions(a, b string) bool {
	i, j := 0, 0
	for {
		for i < len(a) && versionByte(a[i]) {
			i++
		}
		for j < len(b) && versionByte(b[j]) {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if a[i] != b[j] {
			return false
		}
		i++
		j++
	}
}

func versionByte(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

// addCountries adds the session's and the client's countries to an
// event's details when GeoIP is on and knows them.
func (s *Server) addCountries(details map[string]string, o origin, client netip.Addr) {
	if s.o.GeoIP == nil {
		return
	}
	if o.country != "" {
		details["session_country"] = o.country
	}
	if c := s.o.GeoIP.Country(client); c != "" {
		details["client_country"] = c
	}
}

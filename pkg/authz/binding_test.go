package authz

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

func withSource(addr string) reqOpt {
	return func(r *authv3.CheckRequest) {
		r.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50123}}}}}
	}
}

// withRaw sends the headers in the list form (encode_raw_headers), where a
// name may repeat.
func withRaw(kv ...string) reqOpt {
	return func(r *authv3.CheckRequest) {
		h := r.Attributes.Request.Http
		list := []*corev3.HeaderValue{}
		for k, v := range h.Headers {
			list = append(list, &corev3.HeaderValue{Key: k, Value: v})
		}
		for i := 0; i+1 < len(kv); i += 2 {
			list = append(list, &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]})
		}
		h.HeaderMap = &corev3.HeaderMap{Headers: list}
	}
}

// loginFrom creates a session the way the admin API does, with the device
// the login service reported.
func (f *fixture) loginFrom(t testing.TB, d session.Device) string {
	t.Helper()
	id := newIDTB(t)
	now := time.Now().Truncate(time.Millisecond)
	s := &session.Session{Ref: session.RefOf(id), Subject: "alice", Roles: []string{"user"}, Device: d,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: 30 * time.Minute}
	if _, err := f.store.Create(context.Background(), s, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	return id
}

func newIDTB(t testing.TB) string {
	t.Helper()
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The client address is read restrictively: only what the trusted proxies
// wrote counts, and anything that does not read as exactly one address is
// "unknown", never a match.
func TestClientAddr(t *testing.T) {
	tests := []struct {
		name   string
		source string
		xff    []string // one header per element; nil = none
		raw    bool     // list form
		hops   int
		want   string // "" = unknown
	}{
		{name: "source IPv4", source: "192.0.2.7", want: "192.0.2.7"},
		{name: "source IPv6", source: "2001:db8::7", want: "2001:db8::7"},
		{name: "source IPv4-mapped IPv6 is the IPv4 address", source: "::ffff:192.0.2.7", want: "192.0.2.7"},
		{name: "source missing", want: ""},
		{name: "source with a zone", source: "fe80::1%eth0", want: ""},
		{name: "source a pipe path", source: "/run/envoy.sock", want: ""},
		{name: "hops 0 ignores XFF", source: "192.0.2.7", xff: []string{"198.51.100.1"}, want: "192.0.2.7"},
		{name: "hop 1: rightmost", source: "10.0.0.1", xff: []string{"203.0.113.9, 198.51.100.1"}, hops: 1, want: "198.51.100.1"},
		{name: "hop 2", source: "10.0.0.1", xff: []string{"203.0.113.9, 198.51.100.1"}, hops: 2, want: "203.0.113.9"},
		{name: "more entries than hops: the left ones are the client's and ignored", xff: []string{"1.1.1.1, junk, 203.0.113.9, 198.51.100.1"}, hops: 2, want: "203.0.113.9"},
		{name: "fewer entries than hops", xff: []string{"198.51.100.1"}, hops: 2, want: ""},
		{name: "no XFF with hops", source: "192.0.2.7", hops: 1, want: ""},
		{name: "no spaces", xff: []string{"203.0.113.9,198.51.100.1"}, hops: 2, want: "203.0.113.9"},
		{name: "tabs and spaces", xff: []string{" 203.0.113.9 ,\t198.51.100.1\t"}, hops: 2, want: "203.0.113.9"},
		{name: "empty entry right of the one taken", xff: []string{"203.0.113.9,,198.51.100.1"}, hops: 3, want: ""},
		{name: "empty entry taken", xff: []string{"203.0.113.9, ,198.51.100.1"}, hops: 2, want: ""},
		{name: "empty entry left of the one taken is ignored", xff: []string{",,203.0.113.9, 198.51.100.1"}, hops: 2, want: "203.0.113.9"},
		{name: "trailing comma", xff: []string{"203.0.113.9,"}, hops: 1, want: ""},
		{name: "empty header", xff: []string{""}, hops: 1, want: ""},
		{name: "IPv6", xff: []string{"2001:db8::1, 198.51.100.1"}, hops: 2, want: "2001:db8::1"},
		{name: "IPv6 with port", xff: []string{"[2001:db8::1]:443"}, hops: 1, want: "2001:db8::1"},
		{name: "IPv4 with port", xff: []string{"203.0.113.9:8443"}, hops: 1, want: "203.0.113.9"},
		{name: "IPv6 in brackets without port", xff: []string{"[2001:db8::1]"}, hops: 1, want: ""},
		{name: "IPv6 with a zone", xff: []string{"fe80::1%25eth0"}, hops: 1, want: ""},
		{name: "IPv6 with a raw zone", xff: []string{"fe80::1%eth0"}, hops: 1, want: ""},
		{name: "IPv6 with port and zone", xff: []string{"[fe80::1%eth0]:80"}, hops: 1, want: ""},
		{name: "IPv4 leading zeros (octal to inet_aton)", xff: []string{"010.0.0.1"}, hops: 1, want: ""},
		{name: "IPv4 short form", xff: []string{"10.1"}, hops: 1, want: ""},
		{name: "IPv4 as an integer", xff: []string{"3221225985"}, hops: 1, want: ""},
		{name: "hostname", xff: []string{"client.example.com"}, hops: 1, want: ""},
		{name: "unknown", xff: []string{"unknown"}, hops: 1, want: ""},
		{name: "quoted", xff: []string{`"203.0.113.9"`}, hops: 1, want: ""},
		{name: "RFC 7239 syntax", xff: []string{"for=203.0.113.9"}, hops: 1, want: ""},
		{name: "unicode space", xff: []string{"\u2000203.0.113.9"}, hops: 1, want: ""},
		{name: "garbled entry right of the one taken", xff: []string{"203.0.113.9, 198.51.100.1 x"}, hops: 2, want: ""},
		{name: "IPv4-mapped entry", xff: []string{"::ffff:203.0.113.9"}, hops: 1, want: "203.0.113.9"},
		{name: "map form joined repeats", xff: []string{"203.0.113.9,198.51.100.1"}, hops: 2, want: "203.0.113.9"},
		{name: "list form: two headers read as one list", xff: []string{"203.0.113.9", "198.51.100.1"}, raw: true, hops: 2, want: "203.0.113.9"},
		{name: "list form: hop within the last header", xff: []string{"1.1.1.1", "203.0.113.9, 198.51.100.1"}, raw: true, hops: 2, want: "203.0.113.9"},
		{name: "list form: garbled last header", xff: []string{"203.0.113.9", "x"}, raw: true, hops: 2, want: ""},
		{name: "list form: too few", xff: []string{"203.0.113.9", "198.51.100.1"}, raw: true, hops: 3, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []reqOpt
			if tt.source != "" {
				opts = append(opts, withSource(tt.source))
			}
			switch {
			case tt.raw:
				var kv []string
				for _, v := range tt.xff {
					kv = append(kv, "x-forwarded-for", v)
				}
				opts = append(opts, withRaw(kv...))
			case tt.xff != nil:
				opts = append(opts, withHeader("x-forwarded-for", strings.Join(tt.xff, ",")))
			}
			req := request("GET", "/app/x", opts...)
			got, ok := clientAddr(req.Attributes, headersOf(req.Attributes.Request.Http), tt.hops)
			switch {
			case tt.want == "" && ok:
				t.Errorf("got %v, want unknown", got)
			case tt.want != "" && (!ok || got != netip.MustParseAddr(tt.want)):
				t.Errorf("got %v (ok %v), want %s", got, ok, tt.want)
			}
		})
	}
}

func TestSameSansVersions(t *testing.T) {
	chrome := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"
	tests := []struct {
		a, b string
		want bool
	}{
		{chrome, chrome, true},
		{chrome, strings.ReplaceAll(chrome, "120.0.6099.109", "121.0.6167.85"), true},
		{chrome, strings.ReplaceAll(chrome, "Chrome", "Chromium"), false},
		{chrome, strings.ReplaceAll(chrome, "Linux", "linux"), false},
		{chrome, chrome + " ", false},
		{"curl/8.5.0", "curl/", true},
		{"curl/8.5.0", "curl/8.5.0.1", true},
		{"curl/8.5.0", "Curl/8.5.0", false},
		{"a1b", "ab", true},
		{"", "1.2.3", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := sameSansVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("sameSansVersions(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := sameSansVersions(tt.b, tt.a); got != tt.want {
			t.Errorf("sameSansVersions(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

const (
	firefox115 = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0"
	firefox128 = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	safari     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15"
)

// Each binding and action, over both stores: what the client gets, the
// verdict, whether the session survives, and the log line.
func TestBinding(t *testing.T) {
	home := session.Device{UserAgent: firefox115, IP: "198.51.100.23"}
	home6 := session.Device{UserAgent: firefox115, IP: "2001:db8:aa:1::23"}
	ua := Binding{UserAgent: true}
	nets := Binding{IPv4Bits: 24, IPv6Bits: 48}
	both := Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48}
	with := func(b Binding, a PolicyAction) Binding { b.Action = a; return b }
	tests := []struct {
		name    string
		binding Binding
		hops    int
		device  session.Device
		opts    []reqOpt
		status  int
		verdict Decision
		reason  string
		kept    bool   // the session still resolves afterwards
		logged  string // a log line holds this; "" = no mismatch line
	}{
		{name: "UA: browser update keeps the session", binding: with(ua, PolicyDeny), device: home,
			opts: []reqOpt{withHeader("user-agent", firefox128)}, status: 200, verdict: DecisionOK, kept: true},
		{name: "UA: other browser, deny", binding: with(ua, PolicyDeny), device: home,
			opts: []reqOpt{withHeader("user-agent", safari)}, status: 401, verdict: DecisionBindingMismatch, reason: reasonUAMismatch, kept: true, logged: "action=deny"},
		{name: "UA: no user agent, deny", binding: with(ua, PolicyDeny), device: home,
			status: 401, verdict: DecisionBindingMismatch, reason: reasonUAMismatch, kept: true, logged: reasonUAMismatch},
		{name: "UA: two user-agent headers, deny", binding: with(ua, PolicyDeny), device: home,
			opts: []reqOpt{withRaw("user-agent", firefox115, "user-agent", firefox115)}, status: 401, verdict: DecisionBindingMismatch, reason: reasonUAMismatch, kept: true, logged: reasonUAMismatch},
		{name: "UA: other browser, log allows", binding: with(ua, PolicyLog), device: home,
			opts: []reqOpt{withHeader("user-agent", safari)}, status: 200, verdict: DecisionOK, kept: true, logged: "action=log"},
		{name: "UA: other browser, revoke", binding: with(ua, PolicyRevoke), device: home,
			opts: []reqOpt{withHeader("user-agent", safari)}, status: 401, verdict: DecisionBindingMismatch, reason: reasonUAMismatch, kept: false, logged: "action=revoke"},
		{name: "UA: session created without a user agent is not UA-bound", binding: with(ua, PolicyRevoke), device: session.Device{IP: "198.51.100.23"},
			opts: []reqOpt{withHeader("user-agent", safari)}, status: 200, verdict: DecisionOK, kept: true},
		{name: "UA binding ignores the network", binding: with(ua, PolicyRevoke), device: home,
			opts: []reqOpt{withHeader("user-agent", firefox115), withSource("203.0.113.9")}, status: 200, verdict: DecisionOK, kept: true},

		{name: "net: same /24", binding: with(nets, PolicyRevoke), device: home,
			opts: []reqOpt{withSource("198.51.100.200")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "net: other /24, deny", binding: with(nets, PolicyDeny), device: home,
			opts: []reqOpt{withSource("198.51.101.23")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: true,
			logged: "session_network=198.51.100.0/24 client_network=198.51.101.0/24"},
		{name: "net: other /24, revoke", binding: with(nets, PolicyRevoke), device: home,
			opts: []reqOpt{withSource("203.0.113.9")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: false, logged: "action=revoke"},
		{name: "net: other /24, log", binding: with(nets, PolicyLog), device: home,
			opts: []reqOpt{withSource("203.0.113.9")}, status: 200, verdict: DecisionOK, kept: true, logged: "old_network=198.51.100.0/24 new_network=203.0.113.0/24"},
		{name: "net: IPv6 same /48", binding: with(nets, PolicyDeny), device: home6,
			opts: []reqOpt{withSource("2001:db8:aa:ffff::1")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "net: IPv6 other /48", binding: with(nets, PolicyDeny), device: home6,
			opts: []reqOpt{withSource("2001:db8:ab::1")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: true, logged: "session_network=2001:db8:aa::/48"},
		{name: "net: created over IPv4, now IPv6, is a new network", binding: with(nets, PolicyDeny), device: home,
			opts: []reqOpt{withSource("2001:db8:aa::1")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: true, logged: reasonNetworkMismatch},
		{name: "net: IPv4-mapped source matches its IPv4 network", binding: with(nets, PolicyDeny), device: home,
			opts: []reqOpt{withSource("::ffff:198.51.100.1")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "net: IPv4 family unbound", binding: with(Binding{IPv6Bits: 48}, PolicyDeny), device: home,
			opts: []reqOpt{withSource("203.0.113.9")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "net: no client address", binding: with(nets, PolicyDeny), device: home,
			status: 401, verdict: DecisionBindingMismatch, reason: reasonClientUnknown, kept: true, logged: reasonClientUnknown},
		{name: "net: session without device.ip is not network-bound", binding: with(nets, PolicyRevoke), device: session.Device{UserAgent: firefox115},
			opts: []reqOpt{withSource("203.0.113.9")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "net: device.ip not an address never matches", binding: with(nets, PolicyDeny), device: session.Device{IP: "unknown"},
			opts: []reqOpt{withSource("198.51.100.23")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonOriginBad, kept: true, logged: reasonOriginBad},
		{name: "net: device.ip with a port", binding: with(nets, PolicyDeny), device: session.Device{IP: "198.51.100.23:51234"},
			opts: []reqOpt{withSource("198.51.100.1")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "xff: trusted hop gives the client", binding: with(nets, PolicyDeny), hops: 1, device: home,
			opts: []reqOpt{withSource("10.0.0.1"), withHeader("x-forwarded-for", "198.51.100.9")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "xff: a client-written entry left of the hop is not believed", binding: with(nets, PolicyDeny), hops: 1, device: home,
			opts: []reqOpt{withSource("10.0.0.1"), withHeader("x-forwarded-for", "198.51.100.9, 203.0.113.9")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: true, logged: reasonNetworkMismatch},
		{name: "xff: missing header with hops is unknown", binding: with(nets, PolicyDeny), hops: 1, device: home,
			opts: []reqOpt{withSource("198.51.100.9")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonClientUnknown, kept: true, logged: reasonClientUnknown},

		{name: "both: UA first", binding: with(both, PolicyDeny), device: home,
			opts: []reqOpt{withHeader("user-agent", safari), withSource("198.51.100.9")}, status: 401, verdict: DecisionBindingMismatch, reason: reasonUAMismatch, kept: true, logged: reasonUAMismatch},
		{name: "both match", binding: with(both, PolicyRevoke), device: home,
			opts: []reqOpt{withHeader("user-agent", firefox128), withSource("198.51.100.9")}, status: 200, verdict: DecisionOK, kept: true},
		{name: "browser navigation goes to login", binding: with(nets, PolicyDeny), device: home,
			opts: []reqOpt{withSource("203.0.113.9"), withHeader("accept", "text/html")}, status: 302, verdict: DecisionBindingMismatch, reason: reasonNetworkMismatch, kept: true, logged: reasonNetworkMismatch},
	}
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					logs := &logtest.Buffer{}
					f := newFixture(t, mk(t), func(o *Options) {
						o.Binding, o.XFFTrustedHops = tt.binding, tt.hops
						o.Log = slog.New(slog.NewTextHandler(logs, nil))
					})
					id := f.loginFrom(t, tt.device)
					req := request("GET", "/app/x", append([]reqOpt{withCookie("__Host-sid=" + id)}, tt.opts...)...)
					resp, v := f.srv.Decide(context.Background(), req)
					if got := status(resp); got != tt.status {
						t.Errorf("status %d, want %d", got, tt.status)
					}
					if v.Decision != tt.verdict || (tt.reason != "" && v.Reason != tt.reason) {
						t.Errorf("verdict %v %q, want %v %q", v.Decision, v.Reason, tt.verdict, tt.reason)
					}
					if tt.status != 200 && okHas(resp, tokenHeader) {
						t.Error("a refusal carries a token")
					}
					_, err := f.store.Touch(context.Background(), session.RefOf(id))
					if kept := err == nil; kept != tt.kept {
						t.Errorf("session kept = %v (err %v), want %v", kept, err, tt.kept)
					}
					if !tt.kept && !errors.Is(err, session.ErrNotFound) {
						t.Errorf("revoked session: %v, want not found", err)
					}
					out := logs.String()
					switch {
					case tt.logged == "" && strings.Contains(out, "binding mismatch"):
						t.Errorf("unexpected mismatch log: %s", out)
					case tt.logged != "" && !strings.Contains(out, tt.logged):
						t.Errorf("log lacks %q:\n%s", tt.logged, out)
					}
					if strings.Contains(out, id) || strings.Contains(out, "Firefox") || strings.Contains(out, "Safari") {
						t.Errorf("log holds the session ID or a user agent:\n%s", out)
					}
				})
			}
		})
	}
}

// A mismatch is judged on every Check, also when the token comes from the
// cache: the first request from home warms it, the thief's is still refused.
func TestBindingOnCachedToken(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Binding = Binding{IPv4Bits: 24, Action: PolicyDeny} })
	id := f.loginFrom(t, session.Device{IP: "198.51.100.23"})
	home := request("GET", "/app/x", withCookie("__Host-sid="+id), withSource("198.51.100.23"))
	thief := request("GET", "/app/x", withCookie("__Host-sid="+id), withSource("203.0.113.9"))
	for i, tc := range []struct {
		req  *authv3.CheckRequest
		want int
	}{{home, 200}, {thief, 401}, {home, 200}, {thief, 401}} {
		if got := status(f.check(t, tc.req)); got != tc.want {
			t.Errorf("request %d: status %d, want %d", i, got, tc.want)
		}
	}
}

// Revocation on a mismatch that meets a store failure is a 503: the client
// is refused either way, and the answer does not claim the revocation
// happened.
func TestBindingRevokeStoreDown(t *testing.T) {
	st := &failingDelete{Store: session.NewMemoryStore(nil)}
	f := newFixture(t, st, func(o *Options) { o.Binding = Binding{IPv4Bits: 24, Action: PolicyRevoke} })
	id := f.loginFrom(t, session.Device{IP: "198.51.100.23"})
	resp, v := f.srv.Decide(context.Background(), request("GET", "/app/x", withCookie("__Host-sid="+id), withSource("203.0.113.9")))
	if status(resp) != 503 || v.Decision != DecisionUnavailable {
		t.Errorf("status %d verdict %v, want 503 unavailable", status(resp), v.Decision)
	}
}

type failingDelete struct{ session.Store }

func (failingDelete) Delete(context.Context, string) error { return errors.New("connection refused") }

// recorded keeps the events a Server records.
type recorded struct {
	mu sync.Mutex
	e  []events.Event
}

func (r *recorded) Record(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.e = append(r.e, e)
}

// A mismatch is an event whatever the action, with the networks and never
// a user agent; a revoking one is a revoke event too; a logout is one.
func TestBindingAndLogoutEvents(t *testing.T) {
	for _, action := range []PolicyAction{PolicyLog, PolicyDeny, PolicyRevoke} {
		t.Run(action.String(), func(t *testing.T) {
			rec := &recorded{}
			f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
				o.Binding = Binding{UserAgent: true, IPv4Bits: 24, Action: action}
				o.Events = rec
			})
			id := f.loginFrom(t, session.Device{UserAgent: firefox115, IP: "198.51.100.23"})
			ref := session.RefOf(id)
			f.check(t, request("GET", "/app/x", withCookie("__Host-sid="+id), withHeader("user-agent", firefox115),
				withSource("203.0.113.9"), withHeader("x-request-id", "req-1")))
			f.check(t, request("POST", "/auth/logout", withHeader("authorization", "Bearer "+id), withHeader("x-request-id", strings.Repeat("x", 200))))
			want := []events.Type{events.BindingMismatch, events.Logout}
			if action == PolicyLog {
				want[0] = events.NetworkChange
			}
			if action == PolicyRevoke {
				// The session is gone: the logout finds nothing to end.
				want = []events.Type{events.BindingMismatch, events.Revoke}
			}
			if len(rec.e) != len(want) {
				t.Fatalf("events %+v, want types %v", rec.e, want)
			}
			for i, e := range rec.e {
				if e.Type != want[i] || e.SessionRef != ref {
					t.Errorf("event %d = %+v, want %s of %s", i, e, want[i], ref)
				}
			}
			m := rec.e[0]
			if action == PolicyLog {
				if m.RequestID != "req-1" || m.Details["old_network"] != "198.51.100.0/24" || m.Details["new_network"] != "203.0.113.0/24" {
					t.Errorf("network change event %+v", m)
				}
			} else if m.RequestID != "req-1" || m.Details["action"] != action.String() || m.Details["reason"] != reasonNetworkMismatch ||
				m.Details["session_network"] != "198.51.100.0/24" || m.Details["client_network"] != "203.0.113.0/24" {
				t.Errorf("mismatch event %+v", m)
			}
			for _, e := range rec.e {
				for _, v := range e.Details {
					if strings.Contains(v, "Firefox") || strings.Contains(v, id) {
						t.Errorf("event %+v holds a user agent or the session ID", e)
					}
				}
			}
			if action == PolicyRevoke && rec.e[1].Details["by"] != "binding" {
				t.Errorf("revoke event %+v, want by binding", rec.e[1])
			}
			if action != PolicyRevoke && rec.e[1].RequestID != "" {
				t.Errorf("an overlong x-request-id was kept: %q", rec.e[1].RequestID)
			}
		})
	}
}

// With action log a mismatch is recorded when it changes, not on every
// request: a network change once per new network, any other reason once.
func TestLogModeRecordsChanges(t *testing.T) {
	rec := &recorded{}
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyLog}
		o.Events = rec
	})
	id := f.loginFrom(t, session.Device{UserAgent: firefox115, IP: "198.51.100.23"})
	from := func(src, ua string) {
		t.Helper()
		if got := status(f.check(t, request("GET", "/app/x", withCookie("__Host-sid="+id), withSource(src), withHeader("user-agent", ua)))); got != 200 {
			t.Fatalf("from %s: %d, want 200 (log only)", src, got)
		}
	}
	from("198.51.100.1", firefox115) // home: nothing
	for range 3 {
		from("203.0.113.9", firefox115) // moved: one event
	}
	from("203.0.113.77", firefox115)  // same /24: nothing
	from("2001:db8:1::1", firefox115) // IPv6: another network
	from("198.51.100.9", firefox115)  // home again: matches, nothing
	from("203.0.113.9", firefox115)   // and away: a change from the last recorded
	for range 2 {
		from("198.51.100.9", safari) // another browser: once
	}
	var got []string
	for _, e := range rec.e {
		switch e.Type {
		case events.NetworkChange:
			got = append(got, e.Details["old_network"]+">"+e.Details["new_network"])
		default:
			got = append(got, string(e.Type)+":"+e.Details["reason"])
		}
	}
	want := []string{
		"198.51.100.0/24>203.0.113.0/24",
		"203.0.113.0/24>2001:db8:1::/48",
		"2001:db8:1::/48>203.0.113.0/24",
		"binding_mismatch:" + reasonUAMismatch,
	}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("events\n %v\nwant\n %v", got, want)
	}
}

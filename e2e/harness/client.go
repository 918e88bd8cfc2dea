package harness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Result is one HTTP exchange as the client saw it.
type Result struct {
	Method, URL string
	Status      int
	Header      http.Header
	Body        []byte
	Elapsed     time.Duration
}

func (r *Result) String() string {
	body := string(r.Body)
	if len(body) > 600 {
		body = body[:600] + "..."
	}
	return fmt.Sprintf("%s %s -> %d in %s %v %s", r.Method, r.URL, r.Status, r.Elapsed.Round(time.Millisecond), r.Header, body)
}

// Echo is the upstream echo service's answer (e2e/cmd/upstream).
type Echo struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	RawQuery string              `json:"raw_query"`
	Verified bool                `json:"verified"`
	Token    *EchoToken          `json:"token"`
	Headers  map[string][]string `json:"headers"`
	Cookies  []EchoCookie        `json:"cookies"`
}

// EchoToken is the verified token as the upstream saw it.
type EchoToken struct {
	Header map[string]any `json:"header"`
	Claims map[string]any `json:"claims"`
}

// EchoCookie is one cookie the upstream received.
type EchoCookie struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Echo decodes the body as the upstream's echo. It fails the test if the
// response is not one (status 200, JSON with headers).
func (s *Stack) Echo(r *Result) *Echo {
	s.t.Helper()
	if r.Status != http.StatusOK {
		s.t.Fatalf("want 200 from the upstream, got %v", r)
	}
	var e Echo
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Headers == nil {
		s.t.Fatalf("not an upstream echo (%v): %v", err, r)
	}
	return &e
}

// Header returns the single value of a header the upstream received ("" if
// absent); more than one value fails the test.
func (e *Echo) Header(t interface {
	Helper()
	Fatalf(string, ...any)
}, name string) string {
	t.Helper()
	v := e.Headers[strings.ToLower(name)]
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	default:
		t.Fatalf("upstream received %d %s headers: %q", len(v), name, v)
		return ""
	}
}

// JWTPayload decodes the x-jwt-payload header that Envoy's jwt_authn adds
// only after it verified the token; nil if absent.
func (e *Echo) JWTPayload() (map[string]any, error) {
	v := e.Headers["x-jwt-payload"]
	if len(v) == 0 {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v[0], "="))
	if err != nil {
		return nil, fmt.Errorf("x-jwt-payload: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("x-jwt-payload: %w", err)
	}
	return m, nil
}

// ReqOpt changes a request before it is sent.
type ReqOpt func(*http.Request)

// WithHeader adds a request header (several calls add several values).
func WithHeader(k, v string) ReqOpt { return func(r *http.Request) { r.Header.Add(k, v) } }

// WithCookieHeader sets the raw Cookie header. Sessions are sent this way,
// never through a cookie jar: the session cookie is Secure and the stack is
// plain HTTP on loopback.
func WithCookieHeader(v string) ReqOpt { return func(r *http.Request) { r.Header.Set("Cookie", v) } }

// WithSession sends sess's cookie.
func WithSession(sess *Session) ReqOpt { return WithCookieHeader(sess.Cookie()) }

// WithBrowserAccept makes the request look like a browser navigation.
func WithBrowserAccept() ReqOpt {
	return WithHeader("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
}

// Do sends method url with opts and reads the whole answer.
func (s *Stack) Do(method, url string, body io.Reader, opts ...ReqOpt) *Result {
	s.t.Helper()
	r, err := s.TryDo(method, url, body, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// TryDo is Do returning transport errors instead of failing the test.
func (s *Stack) TryDo(method, url string, body io.Reader, opts ...ReqOpt) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(req)
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	return &Result{Method: method, URL: url, Status: resp.StatusCode, Header: resp.Header, Body: b, Elapsed: time.Since(start)}, nil
}

// Get sends GET path to Envoy's edge listener.
func (s *Stack) Get(path string, opts ...ReqOpt) *Result {
	s.t.Helper()
	return s.Do(http.MethodGet, s.EdgeURL(path), nil, opts...)
}

// Session is a logged-in client: the session cookie it got from the login
// service through Envoy.
type Session struct {
	Subject    string
	SessionRef string
	// ID is the opaque session ID (the cookie value).
	ID string
	// SetCookie is the Set-Cookie header the client received.
	SetCookie string
}

// Cookie is the Cookie request header value carrying the session.
func (sess *Session) Cookie() string { return CookieName + "=" + sess.ID }

// Login logs in through Envoy's edge listener (POST /login, JSON) as a
// client on device and returns the session.
func (s *Stack) Login(username, password, device string) *Session {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password, "device": device})
	r := s.Do(http.MethodPost, s.EdgeURL(LoginPath), bytes.NewReader(body),
		WithHeader("Content-Type", "application/json"),
		WithHeader("User-Agent", "e2e-"+device))
	if r.Status != http.StatusOK {
		s.t.Fatalf("login %s: %v", username, r)
	}
	var lr struct {
		Subject    string `json:"subject"`
		SessionRef string `json:"session_ref"`
	}
	if err := json.Unmarshal(r.Body, &lr); err != nil {
		s.t.Fatalf("login %s: %v: %v", username, err, r)
	}
	sc := r.Header.Values("Set-Cookie")
	if len(sc) != 1 {
		s.t.Fatalf("login %s: want one Set-Cookie, got %q", username, sc)
	}
	c, err := http.ParseSetCookie(sc[0])
	if err != nil || c.Name != CookieName || c.Value == "" {
		s.t.Fatalf("login %s: bad Set-Cookie %q: %v", username, sc[0], err)
	}
	return &Session{Subject: lr.Subject, SessionRef: lr.SessionRef, ID: c.Value, SetCookie: sc[0]}
}

// Eventually polls f until it returns nil or timeout passes, then fails
// with f's last error. For conditions that settle asynchronously by design
// (Redis coming back, a JWKS cache refresh), never as a stand-in for a
// readiness signal the system offers.
func (s *Stack) Eventually(timeout time.Duration, what string, f func() error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

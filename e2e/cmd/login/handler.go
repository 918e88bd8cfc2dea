package main

import (
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

// SessionCreator is the part of *admin.Client the handler needs; tests
// substitute a fake.
type SessionCreator interface {
	CreateSession(ctx context.Context, req admin.CreateRequest) (admin.CreateResponse, error)
}

// Handler serves GET /login (a form), POST /login and GET /healthz.
type Handler struct {
	Users map[string]User
	Admin SessionCreator
	Log   *slog.Logger
}

// Routes returns the service's HTTP handler.
func (h *Handler) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", h.form)
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	return noStore(mux)
}

// noStore keeps login pages and their Set-Cookie responses out of caches.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

var formPage = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="return_to" value="{{.ReturnTo}}">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label>Device name <input name="device" placeholder="optional"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`))

type formData struct {
	Error    string
	ReturnTo string
}

func (h *Handler) form(w http.ResponseWriter, r *http.Request) {
	rt, _ := SafeReturnTo(r.URL.Query().Get("return_to"), r)
	h.renderForm(w, http.StatusOK, formData{ReturnTo: rt})
}

func (h *Handler) renderForm(w http.ResponseWriter, status int, d formData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = formPage.Execute(w, d)
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Device   string `json:"device"`
	ReturnTo string `json:"return_to"`
}

type loginResponse struct {
	Subject    string    `json:"subject"`
	SessionRef string    `json:"session_ref"`
	ExpiresAt  time.Time `json:"expires_at"`
	ReturnTo   string    `json:"return_to"`
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == "application/json"

	var req loginRequest
	if isJSON {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body"})
			return
		}
	} else {
		if err := r.ParseForm(); err != nil {
			h.renderForm(w, http.StatusBadRequest, formData{Error: "Bad request."})
			return
		}
		req = loginRequest{
			Username: r.PostForm.Get("username"),
			Password: r.PostForm.Get("password"),
			Device:   r.PostForm.Get("device"),
			ReturnTo: r.PostForm.Get("return_to"),
		}
	}
	returnTo, _ := SafeReturnTo(req.ReturnTo, r)

	u, ok := Authenticate(h.Users, req.Username, req.Password)
	if !ok {
		h.Log.Info("login failed", "username", req.Username)
		if isJSON {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
		} else {
			h.renderForm(w, http.StatusUnauthorized, formData{Error: "Wrong username or password.", ReturnTo: returnTo})
		}
		return
	}

	resp, err := h.Admin.CreateSession(r.Context(), admin.CreateRequest{
		Subject: u.Subject,
		Tenant:  u.Tenant,
		Roles:   u.Roles,
		Claims:  u.Claims,
		Device: &admin.Device{
			UserAgent: r.UserAgent(),
			IP:        clientIP(r),
			Name:      req.Device,
		},
	})
	if err != nil {
		h.Log.Error("create session", "subject", u.Subject, "error", err)
		if isJSON {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "session service unavailable"})
		} else {
			h.renderForm(w, http.StatusBadGateway, formData{Error: "Sign-in is unavailable, try again.", ReturnTo: returnTo})
		}
		return
	}
	// sessiongate built the complete cookie (name, Secure, HttpOnly, Path,
	// SameSite, lifetime); passing it through verbatim keeps those decisions
	// in one place.
	w.Header().Add("Set-Cookie", resp.SetCookie)
	h.Log.Info("login", "subject", u.Subject, "session_ref", resp.SessionRef)
	if isJSON {
		writeJSON(w, http.StatusOK, loginResponse{Subject: u.Subject, SessionRef: resp.SessionRef, ExpiresAt: resp.ExpiresAt, ReturnTo: returnTo})
		return
	}
	// 303 so that the browser follows with a GET, never re-POSTing the
	// password.
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// SafeReturnTo turns a return_to value into a same-origin, path-absolute
// reference such as "/orders/7?tab=2", so that the login page can never be
// turned into an open redirect ("https://evil.example", "//evil.example",
// "/\evil.example", "javascript:..."). sessiongate sends the original URL
// in absolute form; that is accepted when its scheme and host are the ones
// of the request the login service received (Host and X-Forwarded-Proto as
// Envoy forwards them) and reduced to its path and query. Anything else,
// including an empty value, yields "/" and false.
func SafeReturnTo(raw string, r *http.Request) (string, bool) {
	const fallback = "/"
	if raw == "" || len(raw) > 2048 {
		return fallback, false
	}
	// Browsers treat "\" like "/" in URLs ("/\evil" is "//evil"); control
	// characters are stripped by some, which could join a "/" and a "/".
	for _, c := range raw {
		if c == '\\' || c < 0x20 || c == 0x7f {
			return fallback, false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return fallback, false
	}
	if u.Scheme != "" || u.Host != "" {
		if !sameOrigin(u, r) {
			return fallback, false
		}
		u.Scheme, u.Host = "", ""
		raw = u.RequestURI()
		if u.Fragment != "" {
			raw += "#" + u.EscapedFragment()
		}
	}
	if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
		return fallback, false
	}
	return raw, true
}

func sameOrigin(u *url.URL, r *http.Request) bool {
	if r == nil || r.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	scheme := strings.ToLower(r.Header.Get("X-Forwarded-Proto"))
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	return strings.EqualFold(u.Scheme, scheme)
}

// clientIP is the address Envoy saw. Envoy runs with use_remote_address and
// appends the peer address last to X-Forwarded-For, so only the last entry is
// trustworthy; earlier ones are whatever the client sent.
func clientIP(r *http.Request) string {
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		parts := strings.Split(xff[len(xff)-1], ",")
		if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

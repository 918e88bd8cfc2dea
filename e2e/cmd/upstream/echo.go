package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AudiencePrefix says that tokens for paths under Prefix must carry Audience.
type AudiencePrefix struct {
	Prefix   string
	Audience string
}

// Echo verifies the internal JWT and echoes what it received.
type Echo struct {
	Keyfunc         jwt.Keyfunc
	Issuer          string
	DefaultAudience string
	AudiencePrefix  []AudiencePrefix
	TokenHeader     string
	PublicPrefixes  []string
	// Revocations, when set, refuses tokens of sessions sessiongate's
	// revocation feed names (verify.FollowRevocations).
	Revocations interface{ Check(sid string) error }
	Log         *slog.Logger
}

// Response is the JSON body of every echo answer; e2e tests decode it.
type Response struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	RawQuery string `json:"raw_query,omitempty"`
	// Verified is true when a token was present and verified; Token then
	// holds its JOSE header and claims.
	Verified bool      `json:"verified"`
	Token    *Verified `json:"token,omitempty"`
	// Headers are as received, names lower-cased; the token header is
	// included, which is fine for a demo and lets tests compare tokens.
	Headers map[string][]string `json:"headers"`
	Cookies []Cookie            `json:"cookies"`
}

// Verified is a token that passed verification.
type Verified struct {
	Header map[string]any `json:"header"`
	Claims jwt.MapClaims  `json:"claims"`
}

// Cookie is one request cookie.
type Cookie struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Routes returns the handler: /healthz for probes, everything else echoes.
func (e *Echo) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", e.echo)
	return mux
}

// audienceFor picks the audience the token must have for path: the longest
// matching -audience-prefix, else the default. Checking it here (not only at
// the proxy) is what makes a token minted for one service useless at another.
func (e *Echo) audienceFor(path string) string {
	aud, best := e.DefaultAudience, 0
	for _, p := range e.AudiencePrefix {
		if strings.HasPrefix(path, p.Prefix) && len(p.Prefix) > best {
			aud, best = p.Audience, len(p.Prefix)
		}
	}
	return aud
}

func (e *Echo) isPublic(path string) bool {
	for _, p := range e.PublicPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Verify parses and verifies raw for a request to path.
func (e *Echo) Verify(raw, path string) (*Verified, error) {
	tok, err := jwt.Parse(raw, e.Keyfunc,
		// Pinning the algorithms rules out "none" and alg confusion.
		jwt.WithValidMethods([]string{"ES256", "EdDSA", "RS256"}),
		jwt.WithIssuer(e.Issuer),
		jwt.WithAudience(e.audienceFor(path)),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		return nil, err
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	return &Verified{Header: tok.Header, Claims: claims}, nil
}

func (e *Echo) echo(w http.ResponseWriter, r *http.Request) {
	resp := Response{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Headers:  map[string][]string{},
		Cookies:  []Cookie{},
	}
	for k, v := range r.Header {
		resp.Headers[strings.ToLower(k)] = v
	}
	for _, c := range r.Cookies() {
		resp.Cookies = append(resp.Cookies, Cookie{Name: c.Name, Value: c.Value})
	}
	if host := r.Host; host != "" {
		resp.Headers["host"] = []string{host}
	}

	raws := r.Header.Values(e.TokenHeader)
	log := e.Log.With("method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery)
	switch {
	case len(raws) > 1:
		log.Warn("rejected: several tokens")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "more than one internal token"})
		return
	case len(raws) == 1:
		v, err := e.Verify(raws[0], r.URL.Path)
		if err != nil {
			log.Warn("rejected: invalid token", "error", err)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid internal token", "detail": err.Error()})
			return
		}
		if e.Revocations != nil {
			sid, _ := v.Claims["sid"].(string)
			if err := e.Revocations.Check(sid); err != nil {
				log.Warn("rejected: revoked or unchecked session", "error", err)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid internal token", "detail": err.Error()})
				return
			}
		}
		resp.Verified, resp.Token = true, v
		sub, _ := v.Claims.GetSubject()
		log.Info("request", "verified", true, "sub", sub)
	case e.isPublic(r.URL.Path):
		log.Info("request", "verified", false)
	default:
		log.Warn("rejected: no token")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing internal token"})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

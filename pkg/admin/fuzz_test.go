package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// FuzzAdminJSON sends arbitrary bodies to the two endpoints that decode
// JSON (create and update) through the whole handler, over a fresh memory
// store each time. Whatever the body, the answer is one of the documented
// statuses, and a body that is accepted is exactly one JSON object with
// only known fields whose values the store could keep.
func FuzzAdminJSON(f *testing.F) {
	for _, s := range []struct {
		update bool
		body   string
	}{
		{false, `{"subject":"alice","roles":["admin"],"claims":{"org":"acme"},"device":{"name":"phone"}}`},
		{false, `{"subject":"alice","subject":"mallory"}`},
		{false, `{"subject":"alice","is_admin":true}`},
		{false, `{"subject":"alice","SUBJECT":"mallory"}`},
		{false, `{"subject":"alice","\u017Fubject":"mallory"}`},
		{false, `{"subject":"alice"}]`},
		{false, `{"subject":"alice"} {}`},
		{false, `{"subject":"a","idle_timeout":"-5m","absolute_timeout":"9999999h"}`},
		{false, `{"subject":"a","device":{"name":"x\r\nSet-Cookie: y=z"}}`},
		{false, `{"subject":"a\u0000b"}`},
		{false, "{\"subject\":\"\xff\"}"},
		{false, `{"subject":"a","claims":{"sub":"root"}}`},
		{true, `{"roles":["a","b"]}`},
		{true, `{"roles":null,"claims":{"k":"v"}}`},
		{true, `{"roles":[""]}`},
		{true, `{}`},
		{true, `[]`},
	} {
		f.Add(s.update, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, update bool, body []byte) {
		store := session.NewMemoryStore(nil)
		h := NewHandler(Options{
			Store:           store,
			Cookie:          session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
			IdleTimeout:     30 * time.Minute,
			AbsoluteTimeout: 12 * time.Hour,
			Open:            true,
			Log:             discardLog(),
		})
		method, path, okStatus := http.MethodPost, "/v1/sessions", http.StatusCreated
		if update {
			// One session to update, so an accepted update is observable.
			now := time.Now().Truncate(time.Millisecond)
			if _, err := store.Create(context.Background(), &session.Session{Ref: strings.Repeat("a", session.RefLen), Subject: "alice",
				CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}, session.Limit{}); err != nil {
				t.Fatal(err)
			}
			method, path, okStatus = http.MethodPatch, "/v1/users/alice/sessions", http.StatusOK
		}
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		for k, vs := range rec.Header() {
			for _, v := range vs {
				if strings.ContainsAny(k+v, "\r\n") {
					t.Fatalf("response header %q: %q holds CR/LF", k, v)
				}
			}
		}
		switch rec.Code {
		case okStatus:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		if len(body) > MaxBodyBytes {
			t.Fatalf("body of %d bytes accepted", len(body))
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("accepted a body that is not exactly one JSON value: %q", body)
		}
		checkKnownFields(t, body, update)
		checkClaimNames(t, body)
		if update {
			return
		}
		var resp CreateResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("create answer: %v", err)
		}
		if !session.ValidID(resp.SessionID) || session.RefOf(resp.SessionID) != resp.SessionRef {
			t.Fatalf("create answered a bad id/ref pair")
		}
		if strings.ContainsAny(resp.SetCookie, "\r\n") {
			t.Fatalf("set_cookie holds CR/LF: %q", resp.SetCookie)
		}
		e, err := store.Touch(context.Background(), resp.SessionRef)
		if err != nil {
			t.Fatalf("created session unreadable: %v", err)
		}
		s, err := e.Session()
		if err != nil {
			t.Fatalf("created session does not decode: %v", err)
		}
		if s.Subject == "" || s.ExpiresAt.Sub(s.CreatedAt) > 12*time.Hour || s.IdleTimeout < time.Second || s.IdleTimeout > 30*time.Minute {
			t.Fatalf("created session out of bounds: subject %q, lifetime %v, idle %v", s.Subject, s.ExpiresAt.Sub(s.CreatedAt), s.IdleTimeout)
		}
		for _, v := range append(append([]string{s.Subject, s.Tenant, s.Device.Name, s.Device.IP, s.Device.UserAgent}, s.Roles...), claimTexts(s.Claims)...) {
			if err := validText("value", v, maxValue); err != nil {
				t.Fatalf("stored %q: %v", v, err)
			}
		}
	})
}

func claimTexts(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

// checkClaimNames fails when an accepted body carries a custom claim name
// the signer would refuse (one that is, or folds onto, an owned claim).
func checkClaimNames(t *testing.T, body []byte) {
	t.Helper()
	var req struct {
		Claims map[string]string `json:"claims"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("accepted body: %v", err)
	}
	for k := range req.Claims {
		if err := token.CheckCustomClaim(k); err != nil {
			t.Fatalf("accepted claim name %q: %v", k, err)
		}
	}
}

// checkKnownFields fails when an accepted body names a field the request
// type does not have, at the top level or in device.
func checkKnownFields(t *testing.T, body []byte, update bool) {
	t.Helper()
	known := map[string]bool{"subject": true, "tenant": true, "roles": true, "claims": true,
		"idle_timeout": true, "absolute_timeout": true, "device": true}
	if update {
		known = map[string]bool{"roles": true, "claims": true}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("accepted body is not an object: %q", body)
	}
	for k := range top {
		// Exact names only: encoding/json would match "SUBJECT" or
		// "\u017fubject" to subject, which a proxy or log reads differently.
		if !known[k] {
			t.Fatalf("accepted unknown field %q", k)
		}
	}
	if d, ok := top["device"]; ok && !update && string(d) != "null" {
		var dev map[string]json.RawMessage
		if err := json.Unmarshal(d, &dev); err != nil {
			t.Fatalf("device: %v", err)
		}
		for k := range dev {
			if k != "user_agent" && k != "ip" && k != "name" {
				t.Fatalf("accepted unknown device field %q", k)
			}
		}
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// FuzzListQuery sends arbitrary query strings to the session listing,
// starting from listQueryCases with their cursors filled in. Whatever the
// query (a cursor edited, cut, re-encoded, repeated), the answer is a 200
// page within the limits or a 400 in the API's error shape: never a 5xx,
// never a panic.
func FuzzListQuery(f *testing.F) {
	h, _ := listFixture(f)
	for _, tc := range listQueryCases {
		f.Add(cursorQuery(f, h, tc.query))
	}
	f.Fuzz(func(t *testing.T, query string) {
		h, _ := listFixture(t)
		rec := serveList(t, h, "alice", query)
		switch rec.Code {
		case http.StatusOK:
			var out ListResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("?%q: 200 with %q: %v", query, rec.Body, err)
			}
			seen := map[string]bool{}
			for _, s := range out.Sessions {
				if seen[s.SessionRef] {
					t.Fatalf("?%q: %s twice in one page", query, s.SessionRef)
				}
				seen[s.SessionRef] = true
			}
			if len(out.Sessions) > 5 {
				t.Fatalf("?%q: %d sessions; alice has 5", query, len(out.Sessions))
			}
			if out.NextCursor != "" {
				if _, ok := decodeCursor("alice", out.NextCursor); !ok {
					t.Fatalf("?%q: next_cursor %q does not decode", query, out.NextCursor)
				}
			}
		case http.StatusBadRequest:
			var e ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("?%q: 400 body %q is not the API's error JSON", query, rec.Body)
			}
		default:
			t.Fatalf("?%q: status %d (%s)", query, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	})
}

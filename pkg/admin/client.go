package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client calls a sessiongate admin API. A login service written in Go imports
// it to create sessions; the `sessiongate session` CLI is built on it.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the admin API at baseURL (for example
// "http://127.0.0.1:9003"). token may be empty for a --dev server. hc nil
// means http.DefaultClient.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// APIError is a non-2xx answer from the admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin api: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// CreateSession creates a session and returns its ID and Set-Cookie value.
func (c *Client) CreateSession(ctx context.Context, req CreateRequest) (CreateResponse, error) {
	var out CreateResponse
	err := c.do(ctx, http.MethodPost, "/v1/sessions", req, &out, http.StatusCreated)
	return out, err
}

// ListSessions lists every live session of subject, oldest first, following
// next_cursor page by page at the server's default page size.
func (c *Client) ListSessions(ctx context.Context, subject string) ([]SessionInfo, error) {
	return c.ListAllSessions(ctx, subject, 0)
}

// ListAllSessions is ListSessions with pages of limit sessions (0: the
// server's default, DefaultPageLimit).
func (c *Client) ListAllSessions(ctx context.Context, subject string, limit int) ([]SessionInfo, error) {
	all := []SessionInfo{} // no sessions encode as [], as a single page did
	cursor := ""
	for {
		p, err := c.ListSessionsPage(ctx, subject, limit, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Sessions...)
		if p.NextCursor == "" {
			return all, nil
		}
		// A server handing back the cursor it was given would loop forever.
		if p.NextCursor == cursor {
			return nil, fmt.Errorf("admin api: list %s: next_cursor did not advance", subject)
		}
		cursor = p.NextCursor
	}
}

// ListSessionsPage returns one page of subject's sessions: at most limit (0:
// the server's default) from cursor ("" for the first page; then the
// previous page's NextCursor, which is empty on the last page).
func (c *Client) ListSessionsPage(ctx context.Context, subject string, limit int, cursor string) (ListResponse, error) {
	q := url.Values{}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	path := userPath(subject)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out ListResponse
	err := c.doMax(ctx, http.MethodGet, path, nil, &out, http.StatusOK, maxListResponse)
	return out, err
}

// maxListResponse bounds one page's answer: MaxPageLimit sessions with the
// longest device texts the API accepts, escaped, stay below it.
const maxListResponse = 16 << 20

// RevokeSession deletes one session by its session_ref, or a whole refresh
// family (its access session and every refresh token) by its family_ref.
func (c *Client) RevokeSession(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(ref), nil, nil, http.StatusNoContent)
}

// RevokeUser deletes every session of subject and returns how many.
func (c *Client) RevokeUser(ctx context.Context, subject string) (int, error) {
	var out RevokeResponse
	err := c.do(ctx, http.MethodDelete, userPath(subject), nil, &out, http.StatusOK)
	return out.Revoked, err
}

// UpdateUser changes roles and/or claims of every session of subject; the
// change applies from the next request.
func (c *Client) UpdateUser(ctx context.Context, subject string, req UpdateRequest) (int, error) {
	var out UpdateResponse
	err := c.do(ctx, http.MethodPatch, userPath(subject), req, &out, http.StatusOK)
	return out.Updated, err
}

func userPath(subject string) string {
	return "/v1/users/" + url.PathEscape(subject) + "/sessions"
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, want int) error {
	return c.doMax(ctx, method, path, in, out, want, 1<<20)
}

// doMax is do with a bound on the answer's size; a longer answer is an
// error saying so, not a JSON syntax error from a cut-off body.
func (c *Client) doMax(ctx context.Context, method, path string, in, out any, want int, maxBytes int64) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin api %s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("admin api %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return fmt.Errorf("admin api %s %s: read: %w", method, path, err)
	}
	if int64(len(data)) > maxBytes {
		return fmt.Errorf("admin api %s %s: answer longer than %d bytes", method, path, maxBytes)
	}
	if resp.StatusCode != want {
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin api %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

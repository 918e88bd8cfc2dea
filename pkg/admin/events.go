package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// EventsResponse is the answer to GET /v1/events: events after the given
// ID, oldest first. Next is the ID to pass as ?after= for the following
// page: the last event's, or the given after when there was none, so a
// follower polls with it until new events arrive. It is "" only when the
// log is empty and no after was given.
type EventsResponse struct {
	Events []events.Event `json:"events"`
	Next   string         `json:"next"`
}

// eventsPage parses limit and after of GET /v1/events as strictly as a
// session listing's query: anything but one canonical limit and at most one
// event ID is a 400.
func eventsPage(r *http.Request) (limit int, after string, err error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, "", errors.New("query: malformed")
	}
	for k := range q {
		if k != "limit" && k != "after" {
			return 0, "", errors.New("query: unknown parameter; only limit and after are accepted")
		}
	}
	limit = DefaultPageLimit
	if vs, ok := q["limit"]; ok {
		if len(vs) != 1 {
			return 0, "", errors.New("limit: given more than once")
		}
		if limit, ok = parseLimit(vs[0]); !ok {
			return 0, "", errors.New("limit: must be an integer from 1 to " + strconv.Itoa(MaxPageLimit))
		}
	}
	if vs, ok := q["after"]; ok {
		if len(vs) != 1 {
			return 0, "", errors.New("after: given more than once")
		}
		if after = vs[0]; !events.ValidID(after) {
			return 0, "", errors.New("after: must be an event ID (<ms>-<seq>), as in next")
		}
	}
	return limit, after, nil
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	if h.o.EventStore == nil {
		return errStatus(http.StatusNotFound, "no event log")
	}
	limit, after, err := eventsPage(r)
	if err != nil {
		return badRequest(err)
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	page, err := h.o.EventStore.Page(ctx, after, limit)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		return storeError("events", err)
	default:
		return &httpError{code: http.StatusServiceUnavailable, msg: "event log unavailable", retry: time.Second,
			logMsg: "admin: event log", level: slog.LevelError, op: "events", err: err}
	}
	out := EventsResponse{Events: page, Next: after}
	if out.Events == nil {
		out.Events = []events.Event{}
	}
	if len(page) > 0 {
		out.Next = page[len(page)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// record hands e to the event log with who asked for it: the credential
// the audit log names, and the client certificate's CN under mTLS.
func (h *Handler) record(r *http.Request, e events.Event) {
	if h.o.Events == nil {
		return
	}
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	if _, ok := e.Details["by"]; !ok {
		e.Details["by"], _ = r.Context().Value(principalKey{}).(string)
		if cn := clientCN(r); cn != "" {
			e.Details["client_cn"] = cn
		}
	}
	h.o.Events.Record(e)
}

// loginDetails is what a login event tells about the device: its name and
// address as the login service reported them, not the user agent.
func loginDetails(d session.Device) map[string]string {
	out := map[string]string{}
	if d.Name != "" {
		out["device"] = d.Name
	}
	if d.IP != "" {
		out["ip"] = d.IP
	}
	return out
}

// Events returns one page of security events after the ID after ("" = from
// the oldest kept), at most limit (0 = the server's default).
func (c *Client) Events(ctx context.Context, after string, limit int) (EventsResponse, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out EventsResponse
	err := c.doMax(ctx, http.MethodGet, path, nil, &out, http.StatusOK, maxListResponse)
	return out, err
}

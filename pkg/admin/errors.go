package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// httpError is an answer other than success. A handler returns one and
// serveError writes it: the status, the message as a JSON ErrorResponse, a
// Retry-After when it is worth retrying, and a log line when the operator
// should know more than the client is told.
type httpError struct {
	code  int
	msg   string        // the client's ErrorResponse.Error
	retry time.Duration // Retry-After when > 0

	logMsg string // logged at level when not empty; op and err are never sent
	level  slog.Level
	op     string
	err    error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

// errStatus is an answer the client's message explains in full.
func errStatus(code int, msg string) error { return &httpError{code: code, msg: msg} }

// badRequest is a 400 whose message is err's.
func badRequest(err error) error { return errStatus(http.StatusBadRequest, err.Error()) }

// storeError classifies an error a store call returned. Only a store that
// failed (unreachable, timed out) is a 503 worth retrying; a record the
// store returned but that does not decode is a 500, and a caller that went
// away is not a store failure.
func storeError(op string, err error) error {
	switch {
	case errors.Is(err, session.ErrNotFound):
		return errStatus(http.StatusNotFound, "session not found")
	case errors.Is(err, session.ErrLimit):
		return errStatus(http.StatusConflict, "session limit reached")
	case errors.Is(err, session.ErrCorrupt):
		return &httpError{code: http.StatusInternalServerError, msg: "session record corrupt",
			logMsg: "admin: corrupt session record", level: slog.LevelError, op: op, err: err}
	case errors.Is(err, context.Canceled):
		// Nobody reads the answer; the line says the call may not have
		// completed.
		return &httpError{code: http.StatusServiceUnavailable, msg: "request canceled",
			logMsg: "admin: request canceled by the client", level: slog.LevelInfo, op: op, err: err}
	}
	return &httpError{code: http.StatusServiceUnavailable, msg: "session store unavailable", retry: time.Second,
		logMsg: "admin: store", level: slog.LevelError, op: op, err: err}
}

// internalError is a 500 whose cause is logged, not sent.
func internalError(logMsg string, err error) error {
	return &httpError{code: http.StatusInternalServerError, msg: "internal error", logMsg: logMsg, level: slog.LevelError, err: err}
}

// handle adapts a handler that returns an error to an http.HandlerFunc.
func (h *Handler) handle(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			h.serveError(w, r, err)
		}
	}
}

// serveError writes err as the answer. An error that is not an httpError
// is a 500 and logged: a handler that forgot to classify an error fails
// closed and loud.
func (h *Handler) serveError(w http.ResponseWriter, r *http.Request, err error) {
	var e *httpError
	if !errors.As(err, &e) {
		e = internalError("admin: unclassified error", err).(*httpError)
	}
	if e.logMsg != "" {
		args := []any{"remote", r.RemoteAddr, "method", r.Method}
		if cn := clientCN(r); cn != "" {
			args = append(args, "client_cn", cn)
		}
		if e.op != "" {
			args = append(args, "op", e.op)
		}
		if e.err != nil {
			args = append(args, "err", e.err)
		}
		h.o.Log.Log(context.Background(), e.level, e.logMsg, args...)
	}
	if e.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(e.retry)))
	}
	writeJSON(w, e.code, ErrorResponse{Error: e.msg})
}

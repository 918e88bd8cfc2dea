package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// Page sizes of GET /v1/users/{subject}/sessions. A session is a few hundred
// bytes of JSON (up to ~9 KB with the longest device texts), so 1000 keeps
// one answer, and the store reads behind it, bounded.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// listPage parses limit and cursor of a list request. The query is held to
// what the API documents: anything it cannot read exactly as one limit and
// at most one cursor is a 400, so a proxy, a log and the handler never read
// different pages out of one URL.
func listPage(r *http.Request, subject string) (limit int, after uint64, err error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, 0, errors.New("query: malformed")
	}
	for k := range q {
		if k != "limit" && k != "cursor" {
			return 0, 0, errors.New("query: unknown parameter; only limit and cursor are accepted")
		}
	}
	limit = DefaultPageLimit
	if vs, ok := q["limit"]; ok {
		if len(vs) != 1 {
			return 0, 0, errors.New("limit: given more than once")
		}
		if limit, ok = parseLimit(vs[0]); !ok {
			return 0, 0, errors.New("limit: must be an integer from 1 to " + strconv.Itoa(MaxPageLimit))
		}
	}
	if vs, ok := q["cursor"]; ok {
		if len(vs) != 1 {
			return 0, 0, errors.New("cursor: given more than once")
		}
		if after, ok = decodeCursor(subject, vs[0]); !ok {
			return 0, 0, errors.New("cursor: malformed; pass next_cursor exactly as received")
		}
	}
	return limit, after, nil
}

// parseLimit accepts only the canonical decimal spelling of 1..MaxPageLimit:
// no sign, space, leading zero or exponent, which strconv.Atoi would let
// through in part.
func parseLimit(s string) (int, bool) {
	if len(s) == 0 || len(s) > len(strconv.Itoa(MaxPageLimit)) || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= MaxPageLimit
}

// A cursor is base64url (no padding) of 17 bytes: a version, the store's
// index position (big-endian) and a check value over the version, the
// subject and the position. The check value is not a secret: cursors must
// work on every replica and across restarts, and a forged one buys an
// admin nothing it could not list anyway. It makes a cursor edited,
// truncated or taken from another subject's listing a 400 instead of a
// silently different page.
const (
	cursorVersion = 1
	cursorBytes   = 1 + 8 + 8
)

var cursorEncoding = base64.RawURLEncoding.Strict()

func cursorCheck(subject string, head []byte) []byte {
	h := sha256.New()
	h.Write([]byte("sessiongate admin list cursor\x00"))
	h.Write(head)
	h.Write([]byte(subject))
	return h.Sum(nil)[:8]
}

func encodeCursor(subject string, pos uint64) string {
	b := make([]byte, 9, cursorBytes)
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], pos)
	return cursorEncoding.EncodeToString(append(b, cursorCheck(subject, b)...))
}

// decodeCursor returns the position a cursor made by encodeCursor for the
// same subject holds; anything else is refused.
func decodeCursor(subject, c string) (uint64, bool) {
	// Length and alphabet first: the decoder silently skips CR and LF, so
	// a decode alone would accept more than one spelling of a cursor.
	// Strict then refuses a last character with non-zero spare bits.
	if len(c) != cursorEncoding.EncodedLen(cursorBytes) {
		return 0, false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return 0, false
		}
	}
	b, err := cursorEncoding.DecodeString(c)
	if err != nil || len(b) != cursorBytes || b[0] != cursorVersion {
		return 0, false
	}
	if subtle.ConstantTimeCompare(b[9:], cursorCheck(subject, b[:9])) != 1 {
		return 0, false
	}
	pos := binary.BigEndian.Uint64(b[1:9])
	return pos, pos != 0 // the store never hands out 0: it means the start
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	subject, err := subjectParam(r)
	if err != nil {
		return err
	}
	limit, after, err := listPage(r, subject)
	if err != nil {
		return badRequest(err)
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	p, err := h.o.Store.ListPage(ctx, subject, after, limit)
	if err != nil {
		return storeError("list", err)
	}
	out := ListResponse{Sessions: make([]SessionInfo, 0, len(p.Sessions))}
	for _, s := range p.Sessions {
		out.Sessions = append(out.Sessions, SessionInfo{
			SessionRef: s.Ref,
			CreatedAt:  s.CreatedAt.UTC(),
			ExpiresAt:  s.ExpiresAt.UTC(),
			Device:     Device(s.Device),
			FamilyRef:  s.FamilyRef,
		})
	}
	if p.Next != 0 {
		out.NextCursor = encodeCursor(subject, p.Next)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

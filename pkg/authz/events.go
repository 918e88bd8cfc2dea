package authz

import "github.com/sessiongate/sessiongate/pkg/events"

// maxRequestID bounds the x-request-id an event carries. Envoy generates
// it (a UUID) for requests from outside; anything longer, or with a
// control character, is not Envoy's and is left out.
const maxRequestID = 128

// record hands e, with the request's x-request-id, to the event log.
func (s *Server) record(h headers, e events.Event) {
	if s.o.Events == nil {
		return
	}
	if id, _ := h.get("x-request-id"); len(id) <= maxRequestID && !controlByte(id) {
		e.RequestID = id
	}
	s.o.Events.Record(e)
}

func controlByte(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return true
		}
	}
	return false
}

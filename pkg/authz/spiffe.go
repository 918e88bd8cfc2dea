package authz

import (
	"fmt"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// SPIFFE maps the principal Envoy reports for an mTLS peer
// (attributes.source.principal: the client certificate's URI SAN, a SPIFFE
// ID in a mesh) to a service name. Envoy sets it only from a certificate it
// verified, so a client cannot name one; it is only as good as the
// listener's client-certificate requirement.
type SPIFFE struct {
	// Principals maps exact SPIFFE IDs to service names.
	Principals map[string]string
	// TrustDomain, when set, maps spiffe://<TrustDomain>/ns/<ns>/sa/<sa>
	// to the service <sa> (Istio's identity form), unless Principals names
	// the ID.
	TrustDomain string
}

// NewSPIFFE checks a principal map and trust domain as config gives them.
func NewSPIFFE(principals map[string]string, trustDomain string) (SPIFFE, error) {
	m := SPIFFE{Principals: make(map[string]string, len(principals)), TrustDomain: trustDomain}
	for id, name := range principals {
		if _, _, ok := splitSPIFFE(id); !ok {
			return SPIFFE{}, fmt.Errorf("%q is not a SPIFFE ID (spiffe://<trust domain>/<path>)", id)
		}
		if !session.ValidServiceName(name) {
			return SPIFFE{}, fmt.Errorf("%q maps to %q, which is not a service name (a-z, 0-9 and '-', at most 63)", id, name)
		}
		m.Principals[id] = name
	}
	if trustDomain != "" && !validTrustDomain(trustDomain) {
		return SPIFFE{}, fmt.Errorf("trust domain %q: want lower-case letters, digits, '.', '-' and '_'", trustDomain)
	}
	return m, nil
}

// service returns the service a principal maps to. A principal that maps to
// nothing, or is not a well-formed SPIFFE ID, is anonymous.
func (m *SPIFFE) service(principal string) (string, bool) {
	if principal == "" || m == nil {
		return "", false
	}
	if name, ok := m.Principals[principal]; ok {
		return name, true
	}
	if m.TrustDomain == "" {
		return "", false
	}
	td, path, ok := splitSPIFFE(principal)
	if !ok || td != m.TrustDomain {
		return "", false
	}
	// Exactly ns/<ns>/sa/<sa>: any other shape names something else.
	ns, rest, ok := strings.Cut(path, "/")
	if !ok || ns != "ns" {
		return "", false
	}
	nsName, rest, ok := strings.Cut(rest, "/")
	if !ok || nsName == "" {
		return "", false
	}
	sa, name, ok := strings.Cut(rest, "/")
	if !ok || sa != "sa" || !session.ValidServiceName(name) {
		return "", false
	}
	return name, true
}

// splitSPIFFE splits spiffe://<trust domain>/<path>, refusing anything a
// SPIFFE ID may not hold (RFC-style: no query, fragment, port, userinfo,
// empty or dot segments, percent-escapes or non-ASCII).
func splitSPIFFE(id string) (td, path string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok || len(id) > 2048 {
		return "", "", false
	}
	td, path, ok = strings.Cut(rest, "/")
	if !ok || !validTrustDomain(td) || path == "" {
		return "", "", false
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", "", false
			}
		}
	}
	return td, path, true
}

func validTrustDomain(td string) bool {
	if td == "" || len(td) > 255 {
		return false
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// SetSPIFFE replaces the principal mapping; Checks in flight finish with
// the old one. A config reload applies it with the routes.
func (s *Server) SetSPIFFE(m SPIFFE) {
	s.spiffe.Store(&m)
}

// principalService returns the service the request's mTLS peer maps to.
func (s *Server) principalService(attrs *authv3.AttributeContext) (string, bool) {
	return s.spiffe.Load().service(attrs.GetSource().GetPrincipal())
}

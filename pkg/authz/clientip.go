package authz

import (
	"net/netip"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// clientAddr returns the address of the client a request came from: Envoy's
// source.address when hops is 0, else the hops-th entry from the right of
// X-Forwarded-For as Envoy forwards it (entry 1 is the rightmost, the one
// the nearest proxy appended). Entries further left are written by whoever
// sent the request and are never read.
//
// ok is false when the address cannot be known for sure: no source address,
// fewer entries than hops (the request did not pass every trusted proxy),
// an empty or unreadable entry at or right of the one taken, or an address
// with a zone. A caller treats that as a client on an unknown network,
// never as a match.
func clientAddr(attrs *authv3.AttributeContext, h headers, hops int) (netip.Addr, bool) {
	if hops == 0 {
		return parseClientAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress())
	}
	e, ok := xffEntry(h, hops)
	if !ok {
		return netip.Addr{}, false
	}
	return parseClientAddr(e)
}

// xffEntry returns the n-th (n ≥ 1) entry from the right of the request's
// X-Forwarded-For headers, read as one comma-separated list in the order
// they were sent (how Envoy's map form joins repeats). Every entry right of
// it must be a readable address: an empty or garbled one means a proxy in
// the trusted chain did not write what it should, and the count of hops
// would no longer say who wrote the entry taken.
func xffEntry(h headers, n int) (string, bool) {
	if h.list == nil {
		v, ok := h.m["x-forwarded-for"]
		if !ok {
			return "", false
		}
		e, seen := nthFromRight(v, n)
		return e, seen == n
	}
	for i := len(h.list) - 1; i >= 0 && n > 0; i-- {
		if h.list[i].GetKey() != "x-forwarded-for" {
			continue
		}
		e, seen := nthFromRight(value(h.list[i]), n)
		if seen == n {
			return e, true
		}
		if seen < 0 {
			return "", false
		}
		n -= seen
	}
	return "", false
}

// nthFromRight walks the comma-separated entries of v from the right. It
// returns the n-th entry and n when v has that many; else how many entries
// it has, or -1 when one of them (all right of the n-th) is not an address.
// An entry is trimmed of spaces and tabs only.
func nthFromRight(v string, n int) (string, int) {
	seen := 0
	end := len(v)
	for i := len(v); i >= 0; i-- {
		if i > 0 && v[i-1] != ',' {
			continue
		}
		e := trimOWS(v[i:end])
		seen++
		if seen == n {
			return e, n
		}
		if _, ok := parseClientAddr(e); !ok {
			return "", -1
		}
		end = i - 1
	}
	return "", seen
}

// parseClientAddr reads one address as a proxy writes it: an IPv4 or IPv6
// address, optionally with a port ("192.0.2.1:443", "[2001:db8::1]:443").
// A zone is refused (it names an interface of the proxy, not a network),
// as is anything netip refuses: IPv4 with leading zeros (which inet_aton
// reads as octal), short forms like "10.1", hostnames, "unknown". An
// IPv4-mapped IPv6 address is the IPv4 address it maps.
func parseClientAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

package admin

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedSources bounds the rate limiter's memory: a client cycling
// through source addresses (an IPv6 /64 holds 2^64 of them) must not be able
// to grow it without end. Past the bound, untracked sources share one
// limiter, so a flood from many addresses throttles itself.
const maxTrackedSources = 4096

// sourceLimiter is a token bucket per source address. IPv6 sources are keyed
// by their /64, the smallest block a single host is usually given.
type sourceLimiter struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	sources  map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter
}

func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &sourceLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		sources:  make(map[netip.Prefix]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// allow takes a token for remoteAddr (an http.Request's RemoteAddr, never a
// forwarded-for header a client can write). When none is left it returns
// how long until one is.
func (l *sourceLimiter) allow(remoteAddr string, now time.Time) (bool, time.Duration) {
	lim := l.limiterFor(sourceKey(remoteAddr), now)
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *sourceLimiter) limiterFor(key netip.Prefix, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.sources[key]; ok {
		return lim
	}
	if len(l.sources) >= maxTrackedSources {
		// A bucket that has refilled is indistinguishable from a new one,
		// so forgetting it changes nothing for its source.
		for k, lim := range l.sources {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.sources, k)
			}
		}
		if len(l.sources) >= maxTrackedSources {
			return l.overflow
		}
	}
	lim := rate.NewLimiter(l.limit, l.burst)
	l.sources[key] = lim
	return lim
}

// sourceKey maps a RemoteAddr to its bucket. An address that does not parse
// (a Unix socket, a test) gets the zero prefix, one shared bucket.
func sourceKey(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// retryAfter renders a delay as a Retry-After value: whole seconds, at
// least 1, as RFC 9110 wants.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

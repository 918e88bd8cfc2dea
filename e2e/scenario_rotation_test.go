package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// The README's rotation runbook ("Signing keys and rotation"), walked on a
// running sessiongate (config rewrite + SIGHUP at each step, never a restart)
// while logged-in clients keep sending requests through Envoy's edge
// listener. Every request passes ext_authz (sessiongate signs the token),
// jwt_authn on the internal listener and the upstream's own keyfunc
// verification, so a key that one verifier does not know yet, or no longer
// knows, shows up as a failed request.
//
// The upstream runs with its unknown-kid refetch off: it learns keys only
// from its periodic JWKS refresh, like jwt_authn. Neither verifier can
// therefore paper over a key that was made active too early; the waits of
// the runbook alone must be enough.
func TestKeyRotationRunbookZeroFailures(t *testing.T) {
	const (
		ttl        = 10 * time.Second // token.ttl (its minimum)
		jwksMaxAge = time.Second      // token.jwks_max_age
		// One JWKS fetch plus scheduling, on top of every documented wait.
		fetchMargin = 500 * time.Millisecond

		workers  = 4
		interval = 50 * time.Millisecond // per worker: at most 80 requests/s in all
		// Hard bound per worker, well above what the walk needs at this rate
		// (about 20 s); reaching it fails the test, since the walk would then
		// have gone partly unobserved.
		maxPerWorker = 800
	)
	testStart := time.Now()
	s := harness.Start(t, harness.Options{
		Configure: func(c *harness.SGConfig) {
			c.Token.TTL = ttl.String()
			c.Token.JWKSMaxAge = jwksMaxAge.String()
		},
		UpstreamArgs: []string{"-jwks-unknown-kid-every", "0"},
		// The harness's Redis fsyncs every write (for the kill -9
		// scenario), and every authenticated request writes (sliding idle
		// timeout). A disk whose fsync now and then takes longer than
		// redis.timeout (100ms; seen on CI disks) would turn steady traffic
		// into a few fail-closed 503s that have nothing to do with keys.
		// This test never restarts Redis, so it needs no AOF.
		RedisArgs: []string{"--appendonly", "no"},
	})
	// Step 2 of the runbook: wait token.jwks_max_age plus the verifiers' own
	// JWKS refresh interval, from the moment the key is published.
	publishWait := jwksMaxAge + max(harness.JWKSCacheDuration, harness.UpstreamJWKSRefresh) + fetchMargin

	sessions := []*harness.Session{
		s.Login("alice", alicePW, "laptop"),
		s.Login("bob", bobPW, "laptop"),
		s.Login("carol", carolPW, "laptop"),
		s.Login("alice", alicePW, "phone"),
	}
	oldKey := s.Config.Token.SigningKeys[0]
	first := checkRotationEcho(s.Get("/api/me", harness.WithSession(sessions[0]), acceptJSON()), "alice")
	if first.err != "" {
		t.Fatalf("before the walk: %s", first.err)
	}
	oldKID := first.kid
	if kids := jwksKIDs(t, s); !slices.Equal(kids, []string{oldKID}) {
		t.Fatalf("JWKS before the walk %v, want only %q", kids, oldKID)
	}
	deniedBefore := envoyCounter(t, s, "http.hop.jwt_authn.denied")
	allowedBefore := envoyCounter(t, s, "http.hop.jwt_authn.allowed")

	// Live traffic. Each request records the runbook phase it started in.
	var (
		phase    atomic.Int32
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		samples  []rotationSample
		firstNew time.Time // first response carrying a kid other than oldKID
		capped   atomic.Bool
	)
	for w, sess := range sessions {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := range maxPerWorker {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				// Both jwt_authn providers (audiences internal and orders)
				// keep their own JWKS cache; exercise both.
				path := fmt.Sprintf("/api/rotation?w=%d&n=%d", w, n)
				if n%2 == 1 {
					path = fmt.Sprintf("/orders/rotation?w=%d&n=%d", w, n)
				}
				ph := int(phase.Load())
				start := time.Now()
				r, err := s.TryDo(http.MethodGet, s.EdgeURL(path), nil, harness.WithSession(sess), acceptJSON())
				var smp rotationSample
				if err != nil {
					smp.err = err.Error()
				} else {
					smp = checkRotationEcho(r, sess.Subject)
				}
				smp.phase, smp.start, smp.end = ph, start, time.Now()
				mu.Lock()
				samples = append(samples, smp)
				if smp.err == "" && smp.kid != oldKID && firstNew.IsZero() {
					firstNew = smp.end
				}
				mu.Unlock()
			}
			capped.Store(true)
		})
	}
	stopTraffic := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopTraffic) // a Fatal below must not leave workers behind
	countPhase := func(p int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, x := range samples {
			if x.phase == p {
				n++
			}
		}
		return n
	}
	s.Eventually(5*time.Second, "baseline traffic", func() error {
		if n := countPhase(0); n < 4*workers {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})

	// Step 1: publish the next key, verification-only.
	newKey := s.NewKey("signing-key-2")
	phase.Store(1)
	step1At := time.Now()
	s.ReloadSessiongate(func(c *harness.SGConfig) {
		c.Token.SigningKeys = []string{oldKey}
		c.Token.VerificationKeys = []string{newKey}
	})
	var newKID string
	s.Eventually(5*time.Second, "step 1: JWKS publishes the next key", func() error {
		kids, cc, err := fetchJWKS(s.JWKSURL())
		if err != nil {
			return err
		}
		if len(kids) != 2 || !slices.Contains(kids, oldKID) {
			return fmt.Errorf("JWKS kids %v, want %q and one more", kids, oldKID)
		}
		if want := fmt.Sprintf("max-age=%d", int(jwksMaxAge/time.Second)); !strings.Contains(cc, want) {
			return fmt.Errorf("JWKS Cache-Control %q, want %s (token.jwks_max_age)", cc, want)
		}
		newKID = kids[0]
		if newKID == oldKID {
			newKID = kids[1]
		}
		return nil
	})
	publishedAt := time.Now()
	fetches := envoyCounter(t, s, "http.hop.jwt_authn.jwks_fetch_success")
	time.Sleep(time.Until(publishedAt.Add(publishWait))) // the runbook's wait, under traffic
	// Evidence that jwt_authn did refetch in that window (two providers,
	// one cache each); the upstream's refresh is proven by the traffic of
	// step 2 itself, its unknown-kid refetch being off.
	if d := envoyCounter(t, s, "http.hop.jwt_authn.jwks_fetch_success") - fetches; d < 2 {
		t.Fatalf("step 1: jwt_authn fetched the JWKS %d times in the %s after the next key was published, want >= 2", d, publishWait)
	}

	// Step 2: make it active, the old key still published.
	phase.Store(2)
	step2At := time.Now()
	s.ReloadSessiongate(func(c *harness.SGConfig) {
		c.Token.SigningKeys = []string{newKey, oldKey}
		c.Token.VerificationKeys = nil
	})
	var switchAt time.Time
	s.Eventually(5*time.Second, "step 2: a token signed by the next key at the upstream", func() error {
		mu.Lock()
		defer mu.Unlock()
		if firstNew.IsZero() {
			return fmt.Errorf("only kid %q so far", oldKID)
		}
		switchAt = firstNew
		return nil
	})
	if kids := jwksKIDs(t, s); !slices.Equal(kids, sortedKIDs(oldKID, newKID)) {
		t.Fatalf("step 2: JWKS %v, want both %q and %q", kids, oldKID, newKID)
	}
	// Every token signed by the old key was signed before switchAt, so it
	// has expired token.ttl later.
	time.Sleep(time.Until(switchAt.Add(ttl + fetchMargin)))

	// Step 3: drop the old key.
	phase.Store(3)
	step3At := time.Now()
	s.ReloadSessiongate(func(c *harness.SGConfig) {
		c.Token.SigningKeys = []string{newKey}
	})
	s.Eventually(5*time.Second, "step 3: JWKS drops the old key", func() error {
		kids, _, err := fetchJWKS(s.JWKSURL())
		if err != nil {
			return err
		}
		if !slices.Equal(kids, []string{newKID}) {
			return fmt.Errorf("JWKS kids %v, want only %q", kids, newKID)
		}
		return nil
	})
	// Keep the traffic going while every verifier refreshes to the
	// one-key set.
	droppedAt := time.Now()
	fetches = envoyCounter(t, s, "http.hop.jwt_authn.jwks_fetch_success")
	time.Sleep(time.Until(droppedAt.Add(publishWait)))
	if d := envoyCounter(t, s, "http.hop.jwt_authn.jwks_fetch_success") - fetches; d < 2 {
		t.Errorf("step 3: jwt_authn fetched the JWKS %d times after the old key was dropped, want >= 2", d)
	}
	stopTraffic()
	endAt := time.Now()

	// --- What the clients saw. ---
	if capped.Load() {
		t.Errorf("a worker reached its bound of %d requests before the walk ended", maxPerWorker)
	}
	type tally struct{ total, ok, failed, oldKID, newKID int }
	var per [4]tally
	var failures []string
	var oldAfterSwitch []string
	var lastOldEnd, maxOldExp time.Time
	for _, x := range samples {
		c := &per[x.phase]
		c.total++
		if x.err != "" {
			c.failed++
			failures = append(failures, fmt.Sprintf("phase %d, %s after the walk began: %s", x.phase, x.start.Sub(step1At).Round(time.Millisecond), x.err))
			continue
		}
		c.ok++
		switch x.kid {
		case oldKID:
			c.oldKID++
			if x.end.After(lastOldEnd) {
				lastOldEnd = x.end
			}
			if x.exp.After(maxOldExp) {
				maxOldExp = x.exp
			}
			// A request sent after a response already carried the new
			// kid was checked after the switch: the token cache is keyed
			// by the signing key, so a cache hit cannot serve the old one.
			if x.start.After(switchAt) {
				oldAfterSwitch = append(oldAfterSwitch, fmt.Sprintf("sent %s after the switch", x.start.Sub(switchAt).Round(time.Millisecond)))
			}
		case newKID:
			c.newKID++
		default:
			t.Errorf("phase %d: token with kid %q, neither the old %q nor the new %q", x.phase, x.kid, oldKID, newKID)
		}
	}
	names := [4]string{
		"before the walk",
		"step 1 (next key verification-only) + wait",
		"step 2 (next key active, old published) + wait token.ttl",
		"step 3 (old key dropped) + verifier refresh",
	}
	bounds := [5]time.Time{testStart, step1At, step2At, step3At, endAt}
	var total, failed int
	for i, c := range per {
		total += c.total
		failed += c.failed
		t.Logf("%-58s %6s: %4d requests, %4d x 200, %d failed; kid old %4d, new %4d",
			names[i], bounds[i+1].Sub(bounds[i]).Round(100*time.Millisecond), c.total, c.ok, c.failed, c.oldKID, c.newKID)
	}
	t.Logf("total: %d requests, %d failed, over %s of walk; old kid last seen %s after the switch was observed (first new-kid token %s after step 2's SIGHUP)",
		total, failed, endAt.Sub(step1At).Round(100*time.Millisecond), lastOldEnd.Sub(switchAt).Round(time.Millisecond), switchAt.Sub(step2At).Round(time.Millisecond))

	if failed > 0 {
		t.Errorf("%d of %d requests failed during the rotation; first ones:\n%s", failed, total, strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	for i, c := range per {
		if c.total == 0 {
			t.Errorf("no traffic during %s", names[i])
		}
	}
	if per[0].newKID+per[1].newKID > 0 {
		t.Errorf("the next key signed %d tokens before step 2: a verification-only key must never sign", per[0].newKID+per[1].newKID)
	}
	if per[2].newKID == 0 {
		t.Error("step 2: no token signed by the new key reached the upstream")
	}
	if per[3].oldKID > 0 || per[3].newKID == 0 {
		t.Errorf("step 3: %d tokens with the old kid, %d with the new; want only the new", per[3].oldKID, per[3].newKID)
	}
	if len(oldAfterSwitch) > 0 {
		t.Errorf("%d tokens with the old kid after the switch: %v", len(oldAfterSwitch), oldAfterSwitch[:min(len(oldAfterSwitch), 10)])
	}
	if maxOldExp.After(step3At) {
		t.Errorf("the old key was dropped at %s while a token it signed was valid until %s: step 2 did not wait token.ttl", step3At.Format(time.StampMilli), maxOldExp.Format(time.StampMilli))
	}

	// --- What the verifiers saw. ---
	if d := envoyCounter(t, s, "http.hop.jwt_authn.denied") - deniedBefore; d != 0 {
		t.Errorf("jwt_authn denied %d requests during the rotation", d)
	}
	t.Logf("jwt_authn allowed %d requests during the walk", envoyCounter(t, s, "http.hop.jwt_authn.allowed")-allowedBefore)
	if s.Upstream.LogContains("rejected") {
		t.Error("the upstream rejected a request during the rotation (see upstream.log)")
	}
	if d := time.Since(testStart); d > 40*time.Second {
		t.Errorf("the runbook walk took %s, want it under 40s", d.Round(time.Second))
	}
}

// rotationSample is one request of the live traffic.
type rotationSample struct {
	phase      int
	start, end time.Time
	kid        string    // kid of the token the upstream received
	exp        time.Time // its exp
	err        string    // "" when the request went through every verifier
}

// checkRotationEcho checks that r is the upstream's echo of a request that
// passed every verifier, and returns the token's kid and exp. It runs in the
// traffic goroutines, so it reports instead of failing the test.
func checkRotationEcho(r *harness.Result, subject string) rotationSample {
	var x rotationSample
	if r.Status != http.StatusOK {
		x.err = r.String()
		return x
	}
	var e harness.Echo
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Headers == nil {
		x.err = fmt.Sprintf("not an upstream echo (%v): %v", err, r)
		return x
	}
	if !e.Verified || e.Token == nil {
		x.err = fmt.Sprintf("upstream did not verify a token: %v", r)
		return x
	}
	raw := e.Headers[harness.TokenHeader]
	if len(raw) != 1 {
		x.err = fmt.Sprintf("upstream received %d %s headers", len(raw), harness.TokenHeader)
		return x
	}
	// The kid as sent, from the JOSE header of the token itself.
	hdr, _, _ := strings.Cut(raw[0], ".")
	b, err := base64.RawURLEncoding.DecodeString(hdr)
	var jose struct {
		Kid string `json:"kid"`
	}
	if err == nil {
		err = json.Unmarshal(b, &jose)
	}
	if err != nil || jose.Kid == "" || jose.Kid != e.Token.Header["kid"] {
		x.err = fmt.Sprintf("token header %q (%v): kid %q, upstream verified kid %v", b, err, jose.Kid, e.Token.Header["kid"])
		return x
	}
	payload, err := e.JWTPayload()
	if err != nil || payload == nil || payload["jti"] != e.Token.Claims["jti"] {
		x.err = fmt.Sprintf("jwt_authn did not verify the token (x-jwt-payload %v, %v)", payload, err)
		return x
	}
	if sub := e.Token.Claims["sub"]; sub != subject {
		x.err = fmt.Sprintf("sub %v, want %q", sub, subject)
		return x
	}
	exp, _ := e.Token.Claims["exp"].(float64)
	x.kid, x.exp = jose.Kid, time.Unix(int64(exp), 0)
	return x
}

// fetchJWKS returns the sorted kids of the JWKS at url and its
// Cache-Control. Errors are returned, for polling.
func fetchJWKS(url string) ([]string, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, "", fmt.Errorf("JWKS %s: %w", b, err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids, resp.Header.Get("Cache-Control"), nil
}

func sortedKIDs(kids ...string) []string {
	slices.Sort(kids)
	return kids
}

// envoyCounter reads one counter from Envoy's admin /stats.
func envoyCounter(t *testing.T, s *harness.Stack, name string) int64 {
	t.Helper()
	filter := url.QueryEscape("^" + regexp.QuoteMeta(name) + "$")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", s.Ports.EnvoyAdmn, filter))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok && k == name {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("Envoy stat %s: %q", name, v)
			}
			return n
		}
	}
	t.Fatalf("Envoy stat %s not found (%v)", name, sc.Err())
	return 0
}

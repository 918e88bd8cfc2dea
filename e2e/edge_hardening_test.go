package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// rawHTTP1 sends one hand-written HTTP/1.1 request (Connection: close) to
// Envoy's edge listener and returns the status code and the response text.
// Hand-written so that header names go on the wire exactly as the attacker
// would spell them.
func rawHTTP1(t *testing.T, s *harness.Stack, path string, headers ...string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Ports.EnvoyEdge), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n", path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, fmt.Sprintf("%d %v %s", resp.StatusCode, resp.Header, body)
}

// TestEdgeHardening drives the real Envoy with what the edge settings are
// there to stop. One stack; the subtests run side by side so that the
// slowloris wait overlaps the rest.
func TestEdgeHardening(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	sess := s.Login("alice", alicePW, "laptop")

	// A header whose name differs from x-internal-jwt (or another header the
	// chain trusts) only by "_" for "-" is the same header to a CGI-style
	// upstream. Envoy must refuse it outright, before ext_authz, on
	// authenticated and public routes alike.
	t.Run("underscore headers refused before sessiongate and upstream", func(t *testing.T) {
		t.Parallel()
		variants := []string{
			"x_internal_jwt", "X-Internal_Jwt", "x_internal-jwt", // the token sessiongate mints
			"x_jwt_payload",                   // what only the hop's jwt_authn may set
			"sec_fetch_site",                  // carries the CSRF decision with the session cookie
			"x_forwarded_for", "x_request_id", // client address and request identity
		}
		var refused []string
		for i, name := range variants {
			for _, prefix := range []string{"/api/", "/public/"} {
				path := fmt.Sprintf("%sedge-us-%d-%d?%s", prefix, i, time.Now().UnixNano(), probe(t, "underscore"))
				st, resp := rawHTTP1(t, s, path, "Cookie: "+sess.Cookie(), name+": forged")
				if st != http.StatusBadRequest {
					t.Errorf("%s with %q: want 400, got %s", prefix, name, resp)
				}
				refused = append(refused, path)
			}
		}
		// Control: the same request without the header passes, and is seen
		// by sessiongate and the upstream, so that their logs not showing the
		// refused requests means something.
		control := fmt.Sprintf("/api/edge-us-control-%d?%s", time.Now().UnixNano(), probe(t, "underscore-control"))
		if st, resp := rawHTTP1(t, s, control, "Cookie: "+sess.Cookie()); st != http.StatusOK {
			t.Fatalf("control request: want 200, got %s", resp)
		}
		pathOf := func(p string) string { return p[:strings.IndexByte(p, '?')] }
		s.Eventually(5*time.Second, "control request in sessiongate's and the upstream's logs", func() error {
			if !s.Sessiongate.LogContains(pathOf(control)) || !s.Upstream.LogContains(control[strings.IndexByte(control, '?')+1:]) {
				return errors.New("not yet")
			}
			return nil
		})
		for _, p := range refused {
			if strings.HasPrefix(p, "/api/") && s.Sessiongate.LogContains(pathOf(p)) {
				t.Errorf("%s reached sessiongate", p)
			}
			assertNotReachedUpstream(t, s, p[strings.IndexByte(p, '?')+1:])
		}
	})

	// Slowloris: headers that trickle in one line a second must not hold the
	// connection past request_headers_timeout (10s).
	t.Run("slow headers cut off at request_headers_timeout", func(t *testing.T) {
		t.Parallel()
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Ports.EnvoyEdge), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(25 * time.Second))
		start := time.Now()
		if _, err := io.WriteString(c, "GET /public/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				if _, err := fmt.Fprintf(c, "X-Slow-%d: a\r\n", i); err != nil {
					return
				}
			}
		}()
		resp, _ := io.ReadAll(c) // until Envoy closes (or the 25s deadline)
		took := time.Since(start)
		if took < 9*time.Second || took > 15*time.Second {
			t.Fatalf("connection held %s, want it closed at about 10s; got %q", took.Round(time.Millisecond), resp)
		}
		if len(resp) > 0 && !bytes.HasPrefix(resp, []byte("HTTP/1.1 408")) {
			t.Errorf("want 408 or a plain close, got %q", resp)
		}
		t.Logf("cut off after %s: %q", took.Round(time.Millisecond), firstLine(resp))
	})

	// Header blocks above max_request_headers_kb (60 KiB) get 431; just
	// below it they pass, so the limit is the stated one and not the 32 KiB
	// buffer limit.
	t.Run("oversized headers get 431", func(t *testing.T) {
		t.Parallel()
		big := "X-Big: " + strings.Repeat("a", 70*1024)
		p := "/api/edge-big?" + probe(t, "big")
		if st, resp := rawHTTP1(t, s, p, "Cookie: "+sess.Cookie(), big); st != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("70 KiB header: want 431, got %.300s", resp)
		}
		assertNotReachedUpstream(t, s, p[strings.IndexByte(p, '?')+1:])
		fits := "X-Big: " + strings.Repeat("a", 50*1024)
		if st, resp := rawHTTP1(t, s, "/api/edge-big-ok", "Cookie: "+sess.Cookie(), fits); st != http.StatusOK {
			t.Errorf("50 KiB header: want 200, got %.300s", resp)
		}
	})

	// HTTP/2 (cleartext, prior knowledge): Envoy announces the edge limits in
	// its SETTINGS, and streams past max_concurrent_streams are refused.
	t.Run("http2 stream and window limits", func(t *testing.T) {
		t.Parallel()
		h2Limits(t, s)
	})
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return strings.TrimSpace(string(b[:i]))
	}
	return string(b)
}

// h2Conn opens an h2c (prior knowledge) connection to the edge listener and
// returns the framer with the server's SETTINGS and connection window read.
func h2Conn(t *testing.T, s *harness.Stack) (net.Conn, *http2.Framer, map[http2.SettingID]uint32, uint32) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Ports.EnvoyEdge), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's first frame is its SETTINGS; it raises the connection
	// window with a WINDOW_UPDATE on stream 0.
	settings := map[http2.SettingID]uint32{}
	connWindow := uint32(65535)
	for sawSettings, sawWindow := false, false; !sawSettings || !sawWindow; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v (settings %v)", err, settings)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			f.ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			sawSettings = true
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connWindow += f.Increment
				sawWindow = true
			}
		}
	}
	return c, fr, settings, connWindow
}

// h2Burst opens n streams in one write, before Envoy can answer any, and
// reads until each is answered or refused, or the connection ends.
func h2Burst(t *testing.T, c net.Conn, fr *http2.Framer, n int) (answered, refused int, end error) {
	t.Helper()
	var hbuf, out bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	wfr := http2.NewFramer(&out, nil)
	for i := range n {
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "127.0.0.1"}, {":path", fmt.Sprintf("/public/h2-%d", i)}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	for answered+refused < n {
		f, err := fr.ReadFrame()
		if err != nil {
			return answered, refused, err
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			answered++
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				refused++
			}
		case *http2.GoAwayFrame:
			return answered, refused, fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.DataFrame:
			if k := uint32(len(f.Data())); k > 0 {
				fr.WriteWindowUpdate(0, k)
			}
		}
	}
	return answered, refused, nil
}

func h2Limits(t *testing.T, s *harness.Stack) {
	t.Helper()
	const maxStreams = 100
	c, fr, settings, connWindow := h2Conn(t, s)
	if got := settings[http2.SettingMaxConcurrentStreams]; got != maxStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, maxStreams)
	}
	if got := settings[http2.SettingInitialWindowSize]; got != 65536 {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d, want 65536", got)
	}
	if connWindow != 1048576 {
		t.Errorf("connection window = %d, want 1048576", connWindow)
	}
	// Up to the limit, every stream is served.
	if a, r, err := h2Burst(t, c, fr, maxStreams); a != maxStreams || err != nil {
		t.Fatalf("%d streams at once: %d answered, %d refused, %v", maxStreams, a, r, err)
	}
	// Past it, the client does not get the extra streams: Envoy refuses them
	// (REFUSED_STREAM) or, as Envoy 1.40 does, ends the connection as a
	// protocol violation.
	c2, fr2, _, _ := h2Conn(t, s)
	a, r, err := h2Burst(t, c2, fr2, maxStreams+10)
	if a > maxStreams || (r < 10 && err == nil) {
		t.Fatalf("%d streams at once: %d answered, %d refused, end %v; want at most %d served", maxStreams+10, a, r, err, maxStreams)
	}
	t.Logf("SETTINGS %v, connection window %d; %d streams at once: %d answered, %d refused, connection end: %v", settings, connWindow, maxStreams+10, a, r, err)
}

package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// browser is one headless Chromium with its own fresh profile: two of them
// are two devices, sharing no cookie.
type browser struct {
	ctx context.Context
}

// newBrowser starts a headless Chromium. The flags are the ones that work
// on a closed network: without the background-networking ones Chromium's
// own connections are refused and it stalls.
func newBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in a container: no user namespace sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 760),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc() // stops this browser's process
	})
	// The first call starts the browser, which lives as long as ctx: no
	// timeout on it (each step below gets its own).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	return &browser{ctx: ctx}
}

// do runs steps, bounded in time.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value, bounded in time.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// names are the device names the devices page lists, in order.
func names(t *testing.T, b *browser) []string {
	t.Helper()
	return get(t, b, "read the device names", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("li .name")].map(e => e.firstChild.textContent.trim())`))
}

// login signs in through the demo login page, as a person would: the
// devices page sends a browser without a session to the login page, which
// sends it back after the form.
func (b *browser) login(t *testing.T, s *harness.Stack, user, password, device string) {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(s.EdgeURL("/auth/devices")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
	}
	if device != "" {
		steps = append(steps, chromedp.SendKeys(chromedp.CSS(`input[name=device]`), device))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`li .name`)))
	b.do(t, "log in as "+user, steps...)
	if loc := get(t, b, "location", chromedp.Location()); !strings.HasSuffix(loc, "/auth/devices") {
		t.Fatalf("after login the browser is at %s, want the devices page", loc)
	}
}

// The devices page in a real browser through the real Envoy: two devices
// signed in (two browsers with separate profiles), the first sees both,
// signs the other out with the page's own button (a same-origin form post
// through the CSRF check), and the other's next request is refused.
func TestBrowserDevicesPage(t *testing.T) {
	bin, err := harness.ChromiumBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := harness.Start(t, harness.Options{})

	laptop := newBrowser(t, bin)
	phone := newBrowser(t, bin)
	laptop.login(t, s, "alice", alicePW, "")
	phone.login(t, s, "alice", alicePW, "Alice's phone")

	laptop.do(t, "reload the devices page", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`li .name`)))
	listed := names(t, laptop)
	current := get(t, laptop, "the current marker", chromedp.Text(chromedp.CSS(`li .badge`)))
	if len(listed) != 2 || !strings.HasPrefix(listed[0], "Chrome on Linux") || listed[1] != "Alice's phone" || current != "This device" {
		t.Fatalf("the page lists %q (current marked %q), want this Chrome on Linux first, then Alice's phone", listed, current)
	}
	t.Logf("screenshot of the devices page: %s", screenshot(t, laptop, "selfservice-devices.png"))

	// The phone works, until the laptop signs it out with the page's button.
	phone.do(t, "phone opens the list", chromedp.Navigate(s.EdgeURL("/auth/sessions")))
	if body := get(t, phone, "phone's list", chromedp.Text(chromedp.CSS(`body`))); !strings.Contains(body, `"sessions"`) {
		t.Fatalf("the phone's session does not open the list: %.200s", body)
	}
	laptop.do(t, "sign out the phone",
		chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.none`)),
	)
	if after := names(t, laptop); len(after) != 1 || !strings.HasPrefix(after[0], "Chrome on Linux") {
		t.Fatalf("after signing the phone out the page lists %q", after)
	}
	screenshot(t, laptop, "selfservice-devices-after.png")

	// The phone's next request: no session, so the login page; its cookie
	// (still in the browser: only the signed-out device's own logout clears
	// it) opens nothing.
	phone.do(t, "phone after being signed out",
		chromedp.Navigate(s.EdgeURL("/auth/devices")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	if loc := get(t, phone, "location", chromedp.Location()); !strings.Contains(loc, harness.LoginPath+"?return_to=") {
		t.Fatalf("the signed-out phone is at %s, want the login page", loc)
	}
	if r := s.Get("/auth/sessions", acceptJSON(), harness.WithCookieHeader(cookieOf(t, phone))); r.Status != http.StatusUnauthorized {
		t.Fatalf("the signed-out phone's cookie still reads the list: %v", r)
	}

	// The same form post from another origin, with the laptop's cookie, is
	// refused by the CSRF rule (SameSite=Lax would also keep a browser from
	// sending the cookie; the rule does not rely on that).
	r := s.Do(http.MethodPost, s.EdgeURL("/auth/sessions/revoke-others"), nil,
		harness.WithHeader("Origin", "https://evil.example"), harness.WithHeader("Accept", "text/html"),
		harness.WithCookieHeader(cookieOf(t, laptop)))
	if r.Status != http.StatusForbidden {
		t.Fatalf("cross-site form post: %v", r)
	}
}

// cookieOf reads the session cookie out of a browser (it is HttpOnly: the
// page's scripts cannot), to replay it from another origin.
func cookieOf(t *testing.T, b *browser) string {
	t.Helper()
	res := get(t, b, "read the cookies", func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
	})
	for _, c := range res.Cookies {
		if c.Name == harness.CookieName {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("the browser holds no %s cookie", harness.CookieName)
	return ""
}

// screenshot saves a full-page PNG under e2e/.run/ (git-ignored).
func screenshot(t *testing.T, b *browser, name string) string {
	t.Helper()
	png := get(t, b, "screenshot", chromedp.FullScreenshot(100)) // 100: PNG
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "e2e", ".run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

package selfservice

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"time"
)

// Page is what the devices page shows.
type Page struct {
	Rows []Row
	Now  time.Time
	// PathPrefix is self_service.path_prefix: the forms post to
	// PathPrefix/{ref}/revoke and PathPrefix/revoke-others.
	PathPrefix string
}

// pageCSS is the page's only style, inline and allowed by its hash in CSP:
// no external asset, nothing for a hostile network to swap.
const pageCSS = `
:root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--text:#1b1f24;--muted:#5b6572;--line:#e3e6ea;--accent:#0b57d0;--danger:#b3261e;--badge-bg:#e6f0ff;--badge:#0b57d0}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1b1f24;--text:#e8eaed;--muted:#a0a8b3;--line:#2c323a;--accent:#8ab4f8;--danger:#f28b82;--badge-bg:#1f3353;--badge:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:40rem;margin:0 auto;padding:3rem 1.25rem}
h1{font-size:1.75rem;line-height:1.2;margin:0 0 .5rem}
.lead{color:var(--muted);margin:0 0 2rem}
ul{list-style:none;margin:0;padding:0;background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden}
li{display:flex;gap:1rem;align-items:center;justify-content:space-between;padding:1rem 1.25rem;border-top:1px solid var(--line)}
li:first-child{border-top:0}
.name{font-weight:600;margin:0;overflow-wrap:anywhere}
.meta{color:var(--muted);font-size:.9rem;margin:.125rem 0 0;overflow-wrap:anywhere}
.badge{display:inline-block;margin-left:.5rem;padding:0 .5rem;border-radius:999px;background:var(--badge-bg);color:var(--badge);font-size:.75rem;font-weight:600;vertical-align:.1rem}
form{margin:0}
button{font:inherit;font-size:.9rem;font-weight:600;cursor:pointer;border-radius:8px;padding:.5rem .9rem;border:1px solid var(--line);background:var(--card);color:var(--danger);white-space:nowrap}
button:hover{border-color:var(--danger)}
button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.all{margin-top:1.5rem}
.all button{background:var(--danger);border-color:var(--danger);color:#fff;padding:.65rem 1.1rem}
@media (prefers-color-scheme:dark){.all button{color:#1b1f24}}
.none{color:var(--muted);margin-top:1.5rem}
`

// CSP is the Content-Security-Policy of the page: nothing may load, the
// one inline style is allowed by its hash, forms post only to this origin,
// and no other page may frame it (clickjacking a sign-out button).
var CSP = "default-src 'none'; style-src '" + styleHash() + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func styleHash() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// pageTemplate is html/template: every value is escaped for where it
// lands. The style element is part of the template text, so its content is
// exactly pageCSS, the text CSP hashes.
var pageTemplate = template.Must(template.New("devices").Funcs(template.FuncMap{
	"ago": Ago,
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"day": func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Your devices</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<h1>Your devices</h1>
<p class="lead">These devices are signed in to your account. If you don’t recognise one, sign it out; it will have to sign in again.</p>
<ul>
{{- range .Rows}}
<li>
<div>
<p class="name">{{.Label}}{{if .Current}}<span class="badge">This device</span>{{end}}</p>
<p class="meta">{{if .Current}}Active now{{else if .LastSeen.IsZero}}Last active: unknown{{else}}Last active <time datetime="{{iso .LastSeen}}" title="{{day .LastSeen}}">{{ago $.Now .LastSeen}}</time>{{end}}{{with .Device.IP}} · {{.}}{{end}}</p>
<p class="meta">Signed in <time datetime="{{iso .CreatedAt}}" title="{{day .CreatedAt}}">{{ago $.Now .CreatedAt}}</time></p>
</div>
{{- if not .Current}}
<form method="post" action="{{$.PathPrefix}}/{{.Ref}}/revoke"><button type="submit" aria-label="Sign out {{.Label}}">Sign out</button></form>
{{- end}}
</li>
{{- end}}
</ul>
{{if .Others -}}
<form class="all" method="post" action="{{.PathPrefix}}/revoke-others"><button type="submit">Sign out all other devices</button></form>
{{- else -}}
<p class="none">No other device is signed in.</p>
{{- end}}
</main>
</body>
</html>
`))

// Others reports whether a session other than the current one is listed.
func (p Page) Others() bool {
	for _, r := range p.Rows {
		if !r.Current {
			return true
		}
	}
	return false
}

// HTML renders the page.
func HTML(p Page) ([]byte, error) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("devices page: %w", err)
	}
	return b.Bytes(), nil
}

// Ago says how long before now t was, as a person would: "just now",
// "2 minutes ago", "yesterday", "3 days ago", then the date.
func Ago(now, t time.Time) string {
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 48*time.Hour:
		return "yesterday"
	case d < 30*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	}
	return "on " + t.UTC().Format("2 Jan 2006")
}

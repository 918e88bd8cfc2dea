package selfservice

import (
	"strings"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// DeviceLabel names a device for its owner: the name the login service
// gave it, else "<browser> on <system>" read from the user agent, else
// "Unknown device". It only ever picks from fixed strings (or returns the
// given name), so nothing of a hostile user agent but its match survives.
func DeviceLabel(d session.Device) string {
	if name := strings.TrimSpace(d.Name); name != "" {
		return name
	}
	browser, system := browserOf(d.UserAgent), systemOf(d.UserAgent)
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "A browser on " + system
	}
	return "Unknown device"
}

// browserOf names the browser of a user agent. Order matters: Edge and
// Opera say Chrome too, Chrome says Safari, and every one says Mozilla.
func browserOf(ua string) string {
	switch {
	case ua == "":
		return ""
	case strings.Contains(ua, "Edg/"), strings.Contains(ua, "EdgA/"), strings.Contains(ua, "EdgiOS/"):
		return "Edge"
	case strings.Contains(ua, "OPR/"), strings.Contains(ua, "Opera"):
		return "Opera"
	case strings.Contains(ua, "SamsungBrowser/"):
		return "Samsung Internet"
	case strings.Contains(ua, "Firefox/"), strings.Contains(ua, "FxiOS/"):
		return "Firefox"
	case strings.Contains(ua, "Chrome/"), strings.Contains(ua, "Chromium/"), strings.Contains(ua, "CriOS/"):
		return "Chrome"
	case strings.Contains(ua, "Safari/") && strings.Contains(ua, "Version/"):
		return "Safari"
	case strings.HasPrefix(ua, "curl/"):
		return "curl"
	}
	return ""
}

// systemOf names the operating system of a user agent.
func systemOf(ua string) string {
	switch {
	case ua == "":
		return ""
	case strings.Contains(ua, "iPhone"):
		return "iPhone"
	case strings.Contains(ua, "iPad"):
		return "iPad"
	case strings.Contains(ua, "Android"):
		return "Android"
	case strings.Contains(ua, "CrOS"):
		return "ChromeOS"
	case strings.Contains(ua, "Windows"):
		return "Windows"
	case strings.Contains(ua, "Macintosh"), strings.Contains(ua, "Mac OS X"):
		return "macOS"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "X11"):
		return "Linux"
	}
	return ""
}

package authz

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Percent-encoded non-ASCII is the one part of a path that cleanPath cannot
// judge byte by byte: an upstream may decode it and then fold it — NFKC
// normalisation, Unicode case mapping, "best fit" code pages — into plain
// ASCII. "/adm%C4%B1n" is "/admın" to sessiongate but "/ADMIN" to Java's
// toUpperCase, and "/public/%E2%80%A5/admin" becomes "/public/../admin" under
// NFKC. Such a path is checked once more in its folded form: if folding adds
// structure (dots, slashes, any ASCII punctuation) or changes which route
// rule applies, it is refused. Ordinary non-ASCII ("/straße", "/café",
// "/kullanıcı" when no rule is about "kullanici") passes unchanged, and the
// work is only done for paths that carry such escapes at all.

// foldPath returns the path as a folding upstream might see it: percent-
// decoded, every non-ASCII rune replaced by its NFKC form and any ASCII
// letter its case mapping reaches, default-ignorable code points dropped,
// and ASCII lower-cased. ok is false when the decoded path is not UTF-8 or
// a non-ASCII rune folds to ASCII that is not a letter or digit.
func foldPath(p string) (folded string, ok bool) {
	dec, ok := percentDecode(p)
	if !ok || !utf8.ValidString(dec) {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(dec))
	for _, r := range dec {
		if r < utf8.RuneSelf {
			b.WriteByte(lowerASCII(byte(r)))
			continue
		}
		if !foldRune(&b, r, 0) {
			return "", false
		}
	}
	return b.String(), true
}

// foldRune writes r's folded form. Folding may only ever produce ASCII
// letters and digits: a non-ASCII rune that some upstream turns into '.',
// '/', '\', '%' or ';' is there to be a traversal. depth bounds the
// recursion into r's NFKC expansion, whose runes are folded in turn.
func foldRune(b *strings.Builder, r rune, depth int) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		if !isAlnum(c) {
			return false
		}
		b.WriteByte(lowerASCII(c))
		return true
	}
	if ignorable(r) {
		return true
	}
	if s, ok := specialFold[r]; ok {
		if s == "" {
			return false
		}
		b.WriteString(s)
		return true
	}
	if nf := norm.NFKC.String(string(r)); depth < 2 && nf != string(r) {
		for _, n := range nf {
			if !foldRune(b, n, depth+1) {
				return false
			}
		}
		return true
	}
	if a, ok := asciiCase(r); ok {
		b.WriteByte(a)
		return true
	}
	b.WriteRune(r)
	return true
}

// canonicalFolded holds a folded path to the rules cleanPath holds the raw
// one to. Folding drops default-ignorable code points, so "/a/\u00ad../b",
// harmless as sent, is "/a/../b" to an upstream that drops them too.
func canonicalFolded(f string) bool {
	if strings.Contains(f, "//") {
		return false
	}
	for seg := range strings.SplitSeq(f, "/") {
		if dotSegment(seg) {
			return false
		}
	}
	return true
}

// asciiCase returns the lower-case ASCII letter that a simple case mapping
// of r reaches, if any: K (Kelvin sign) → k, ſ (long s) → s, ı → I, İ → i.
func asciiCase(r rune) (byte, bool) {
	for _, c := range [...]rune{unicode.ToLower(r), unicode.ToUpper(r), unicode.ToTitle(r)} {
		if c < utf8.RuneSelf {
			return lowerASCII(byte(c)), true
		}
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return lowerASCII(byte(f)), true
		}
	}
	return 0, false
}

// specialFold covers what NFKC and simple case mapping do not: full case
// folding to several letters (ß → ss, as Python's casefold and Java's
// toUpperCase do), and look-alikes of '/', '\' and '.' that Windows "best
// fit" mappings and some URL parsers turn into the real thing ("" = refuse).
var specialFold = map[rune]string{
	'\u00df': "ss", '\u1e9e': "ss", // ß, ẞ
	'\u0149': "\u02bcn", '\u01f0': "j", // ŉ, ǰ
	'\u1e96': "h", '\u1e97': "t", '\u1e98': "w", '\u1e99': "y", '\u1e9a': "a",
	'\u2215': "", '\u2044': "", '\u2216': "", '\u29f5': "", '\u29f8': "", '\u29f9': "", // slash and backslash look-alikes
	'\u3002': "", '\uff61': "", '\u2e33': "", '\u2e34': "", // full stops
}

// ignorable reports default-ignorable code points (soft hyphen, zero-width
// and bidi controls, variation selectors, BOM), which IDNA-style mappings
// delete: "/ad\u00admin" would otherwise be "/admin" upstream.
func ignorable(r rune) bool {
	switch {
	case r == 0x00ad, r == 0x034f, r == 0x061c, r == 0x115f, r == 0x1160, r == 0x3164, r == 0xfeff, r == 0xffa0:
		return true
	case r >= 0x17b4 && r <= 0x17b5, r >= 0x180b && r <= 0x180f, r >= 0x200b && r <= 0x200f,
		r >= 0x202a && r <= 0x202e, r >= 0x2060 && r <= 0x206f, r >= 0xfe00 && r <= 0xfe0f,
		r >= 0xfff0 && r <= 0xfff8, r >= 0x1bca0 && r <= 0x1bca3, r >= 0x1d173 && r <= 0x1d17a,
		r >= 0xe0000 && r <= 0xe0fff:
		return true
	}
	return false
}

// percentDecode decodes every %XX escape. cleanPath has already checked that
// each escape is well formed.
func percentDecode(p string) (string, bool) {
	if !strings.Contains(p, "%") {
		return p, true
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b = append(b, p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// foldedPrefix is a rule's prefix in the same folded form as foldPath, so a
// folded path is compared like for like. A prefix that does not fold (it
// would be a strange rule) keeps its ASCII-lower-cased raw form.
func foldedPrefix(prefix string) string {
	if f, ok := foldPath(prefix); ok {
		return f
	}
	return strings.ToLower(prefix)
}

// matchFolded returns the index of the first rule whose folded prefix
// starts the folded path, or -1.
func matchFolded(routes []Route, method, folded string) int {
	for i := range routes {
		r := &routes[i]
		if !r.Shadow && r.forMethod(method) && strings.HasPrefix(folded, r.folded) {
			return i
		}
	}
	return -1
}

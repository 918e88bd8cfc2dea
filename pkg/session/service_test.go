package session

import (
	"hash/crc32"
	"strings"
	"testing"
)

func TestNewCredentialIsValidAndFresh(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := NewCredential()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != CredentialLen || !strings.HasPrefix(c, CredentialPrefix) || !ValidCredential(c) {
			t.Fatalf("NewCredential() = %q: not valid", c)
		}
		if seen[c] {
			t.Fatalf("NewCredential() repeated %q", c)
		}
		seen[c] = true
	}
}

// credentialCases are the forms a credential check must refuse; they also
// seed FuzzValidCredential.
func credentialCases(t testing.TB) []struct {
	name string
	in   string
	ok   bool
} {
	good, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	body := good[len(CredentialPrefix):]
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	sid, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	var sum [credSumLen]byte
	putChecksum(sum[:], crc32.ChecksumIEEE([]byte(sid)))
	return []struct {
		name string
		in   string
		ok   bool
	}{
		{"a fresh credential", good, true},
		{"empty", "", false},
		{"prefix only", CredentialPrefix, false},
		{"wrong prefix", "sgsvx_" + body, false},
		{"upper-case prefix", "SGSVC_" + body, false},
		{"no prefix", body, false},
		{"a random character changed (bad checksum)", CredentialPrefix + flip(body, 3), false},
		{"a checksum character changed", CredentialPrefix + flip(body, credRandLen+2), false},
		{"one character short", good[:len(good)-1], false},
		{"one character long", good + "A", false},
		{"a non-base62 character", CredentialPrefix + "-" + body[1:], false},
		{"trailing space", good[:len(good)-1] + " ", false},
		{"a session ID behind the prefix", CredentialPrefix + sid, false},
		{"a session ID", sid, false},
		// Well formed exactly when the ID happens to be all base62: the form
		// says nothing about where a string came from; the store decides.
		{"a session ID with its checksum appended", CredentialPrefix + sid + string(sum[:]), !strings.ContainsAny(sid, "-_")},
	}
}

func TestValidCredential(t *testing.T) {
	for _, tc := range credentialCases(t) {
		if got := ValidCredential(tc.in); got != tc.ok {
			t.Errorf("%s: ValidCredential(%q) = %v, want %v", tc.name, tc.in, got, tc.ok)
		}
	}
}

func TestValidCredentialAllocatesNothing(t *testing.T) {
	c, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { ValidCredential(c) }); n != 0 {
		t.Errorf("ValidCredential: %.1f allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { CredentialRefOf(c) }); n > 1 {
		t.Errorf("CredentialRefOf: %.1f allocations, want at most 1", n)
	}
}

func FuzzValidCredential(f *testing.F) {
	for _, tc := range credentialCases(f) {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidCredential(s) {
			return
		}
		// Anything accepted has the one form, and its checksum is that of
		// its random part.
		if len(s) != CredentialLen || !strings.HasPrefix(s, CredentialPrefix) {
			t.Fatalf("accepted %q", s)
		}
		var sum [credSumLen]byte
		putChecksum(sum[:], crc32.ChecksumIEEE([]byte(s[len(CredentialPrefix):len(CredentialPrefix)+credRandLen])))
		if string(sum[:]) != s[len(s)-credSumLen:] {
			t.Fatalf("accepted %q with a wrong checksum", s)
		}
		if !HasCredentialPrefix(s) || ValidID(s) {
			t.Fatalf("%q read as both kinds of credential", s)
		}
	})
}

func TestValidServiceName(t *testing.T) {
	for in, want := range map[string]bool{
		"billing": true, "inventory-v2": true, "a": true, strings.Repeat("a", 63): true, "0ops": true,
		"": false, strings.Repeat("a", 64): false, "-billing": false, "billing-": false, "Billing": false,
		"bill_ing": false, "bill.ing": false, "bill:ing": false, "bill ing": false, "billing\n": false, "bi\u0131ling": false,
	} {
		if got := ValidServiceName(in); got != want {
			t.Errorf("ValidServiceName(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseServiceEntryRefusesBadRecords(t *testing.T) {
	ref := strings.Repeat("a", RefLen)
	for _, raw := range []string{
		"", "garbage", `2:1:billing:{"cat":1}`, `1:x:billing:{"cat":1}`, `1:1:Billing:{"cat":1}`,
		`1:1:billing:`, `1:1:billing`, `1:1::{"cat":1}`, "1:1:" + strings.Repeat("a", MaxRecordSize) + `:{}`,
	} {
		if _, err := parseServiceEntry(ref, raw); err == nil {
			t.Errorf("parseServiceEntry(%q) accepted", raw)
		}
	}
	e, err := parseServiceEntry(ref, `1:3:billing:{"rol":["a"],"cat":1}`)
	if err != nil || e.Name != "billing" || e.Version != 3 {
		t.Fatalf("parseServiceEntry = %+v, %v", e, err)
	}
	for _, body := range []string{`{"rol":["a"],"cat":1,"x":1}`, `{"rol":["a\nb"],"cat":1}`, `{"cat":1}{"cat":2}`} {
		e, err := parseServiceEntry(ref, "1:1:billing:"+body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Roles(); err == nil {
			t.Errorf("Roles of %s accepted", body)
		}
	}
}

func TestCRCStringIsCRC32IEEE(t *testing.T) {
	for _, s := range []string{"", "a", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg", strings.Repeat("z", 43)} {
		if got, want := crcString(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("crcString(%q) = %08x, want %08x", s, got, want)
		}
	}
}

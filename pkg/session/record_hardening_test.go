package session

import (
	"errors"
	"strings"
	"testing"
)

// TestEntrySessionRefusesForeignRecords pins what a record written by
// something other than sessiongate may not carry: data after the JSON body
// (json.Decoder alone reads the first value and ignores the rest) and
// control characters in any value, which would reach signed claims and
// Envoy's access log. Both are ErrCorrupt, which Check answers with a 401.
func TestEntrySessionRefusesForeignRecords(t *testing.T) {
	const head = "1:1:1893456000000:60000:"
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"plain", `{"sub":"alice","cat":1}`, true},
		{"unicode is fine", `{"sub":"zoë","ten":"Straße","dev":{"name":"iPhone de Zoë"},"cat":1}`, true},
		{"trailing garbage", `{"sub":"alice","cat":1}garbage`, false},
		{"second object", `{"sub":"alice","cat":1}{"sub":"mallory"}`, false},
		{"trailing whitespace", "{\"sub\":\"alice\",\"cat\":1}\n", true},
		{"CRLF in subject", `{"sub":"alice\r\nx-internal-jwt: forged","cat":1}`, false},
		{"LF in claim value", `{"sub":"a","clm":{"org":"x\ny"},"cat":1}`, false},
		{"CR in claim key", `{"sub":"a","clm":{"o\rg":"x"},"cat":1}`, false},
		{"NUL in role", `{"sub":"a","rol":["ad\u0000min"],"cat":1}`, false},
		{"tab in tenant", `{"sub":"a","ten":"a\tb","cat":1}`, false},
		{"C1 control in device name", `{"sub":"a","dev":{"name":"x\u0085y"},"cat":1}`, false},
		{"line separator in user agent", `{"sub":"a","dev":{"user_agent":"x\u2028y"},"cat":1}`, false},
		{"DEL in device ip", `{"sub":"a","dev":{"ip":"1.2.3.4\u007f"},"cat":1}`, false},
		{"custom claims", `{"sub":"a","clm":{"email":"a@example.com","urn:x:level":"2"},"cat":1}`, true},
		{"claim SUB", `{"sub":"a","clm":{"SUB":"root"},"cat":1}`, false},
		{"claim Aud", `{"sub":"a","clm":{"Aud":"billing"},"cat":1}`, false},
		{"claim EXP", `{"sub":"a","clm":{"EXP":"9999999999"},"cat":1}`, false},
		{"claim Tenant", `{"sub":"a","clm":{"Tenant":"othercorp"},"cat":1}`, false},
		{"claim long s", `{"sub":"a","clm":{"\u017fub":"root"},"cat":1}`, false},
		{"claim exact sid", `{"sub":"a","clm":{"sid":"x"},"cat":1}`, false},
		{"claim zero width", `{"sub":"a","clm":{"ro\u200bles":"admin"},"cat":1}`, false},
		{"claim empty name", `{"sub":"a","clm":{"":"x"},"cat":1}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := parseEntry(strings.Repeat("a", RefLen), head+tc.body)
			if err != nil {
				t.Fatalf("header refused: %v", err)
			}
			_, err = e.Session()
			if tc.ok && err != nil {
				t.Fatalf("Session() = %v, want a session", err)
			}
			if !tc.ok && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Session() = %v, want ErrCorrupt", err)
			}
		})
	}
}

package audit

import (
	"bytes"
	"encoding/csv"
	"testing"
)

// FuzzAppendCSVField: export's CSV row writer writes what encoding/csv
// writes.
func FuzzAppendCSVField(f *testing.F) {
	for _, s := range []string{"", "plain", "a,b", `q"q`, "nl\n", "cr\r", " lead", "\tlead", `\.`, "\u00a0x", "\u2028", "\xff", "trail "} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var want bytes.Buffer
		c := csv.NewWriter(&want)
		_ = c.Write([]string{a, b})
		c.Flush()
		if got := appendCSVRow(nil, []string{a, b}); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendCSVRow(%q, %q) = %q; want %q", a, b, got, want.Bytes())
		}
		if got := appendCSVField(nil, []byte(a)); !bytes.Equal(got, appendCSVField(nil, a)) {
			t.Errorf("appendCSVField([]byte(%q)) = %q; want %q", a, got, appendCSVField(nil, a))
		}
	})
}

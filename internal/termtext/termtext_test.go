package termtext_test

import (
	"strings"
	"testing"
	"unicode"

	"github.com/sessionledger/sessionledger/internal/termtext"
)

// hostile is the device name of issue 11: it clears the screen, sets the
// window title and forges a row of auditq events.
const hostile = "x\033]0;owned\007\033[2J\nFAKE_ROW\tkick_requested\talice"

// safe reports whether s has nothing a terminal acts on.
func safe(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == '\u202e' || r == '\u2028' || r == unicode.ReplacementChar
	})
}

func TestField(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice", "alice"},
		{"01JD3M1Q4Z8X7W2V5T0R6P9N3K", "01JD3M1Q4Z8X7W2V5T0R6P9N3K"},
		{"ops-bob@example.com", "ops-bob@example.com"},
		{"Zoë's", "Zoë's"},
		{"", `""`},
		{"-", `"-"`},
		{"password changed", `"password changed"`},
		{`say "hi"`, `"say \"hi\""`},
		{`a\nb`, `"a\\nb"`},
		{hostile, `"x\x1b]0;owned\a\x1b[2J\nFAKE_ROW\tkick_requested\talice"`},
		{"evil\u202eabc", `"evil\u202eabc"`},
		{"line\u2028sep", `"line\u2028sep"`},
		{"bad\xffbyte", `"bad\xffbyte"`},
	} {
		got := termtext.Field(c.in)
		if got != c.want {
			t.Errorf("Field(%q) = %s; want %s", c.in, got, c.want)
		}
		if !safe(got) || strings.ContainsAny(got, "\n\r\t") {
			t.Errorf("Field(%q) = %q holds characters a terminal acts on", c.in, got)
		}
		if termtext.Line(got) != got {
			t.Errorf("Line(Field(%q)) = %q; want it unchanged", c.in, termtext.Line(got))
		}
	}
	if got := termtext.Cell(""); got != "-" {
		t.Errorf("Cell(\"\") = %q; want -", got)
	}
	if got := termtext.Cell("a b"); got != `"a b"` {
		t.Errorf("Cell(\"a b\") = %q; want it quoted", got)
	}
}

func TestLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"session s1 ended: kicked by ops for \"spam\"", "session s1 ended: kicked by ops for \"spam\""},
		{hostile, `x\x1b]0;owned\a\x1b[2J\nFAKE_ROW\tkick_requested\talice`},
		{"a\r\nb", `a\r\nb`},
		{"evil\u202eabc", `evil\u202eabc`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"ünïcödé ok", "ünïcödé ok"},
	} {
		if got := termtext.Line(c.in); got != c.want || !safe(got) {
			t.Errorf("Line(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

// Package termtext prints recorded text on an operator's terminal safely.
//
// Names and reasons in the ledger are chosen by clients and operators: a
// device name may hold escape sequences that clear a screen, set a window
// title or forge a table row. Every human-readable output (hubctl, auditq
// tables and timelines, the hub client's error text) goes through this
// package; JSON and CSV outputs stay exact (their encoders quote what
// needs it, and their readers want the bytes as recorded).
//
// # Functions
//
//   - Field: one name or reason in a table or a sentence: as it is if it is
//     a plain word, else Go-quoted (strconv.Quote), so no control character
//     reaches the terminal and a value with spaces cannot pass for two.
//   - Cell: Field for a table cell, "-" for an empty value.
//   - Line: a whole line whose names are quoted already (a sentence, an
//     error): every character a terminal would act on, and only those,
//     written as a Go escape.
package termtext

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Field returns s as it is when it is a plain word: not empty, not "-",
// every character printable (strconv.IsPrint) and none a space, a double
// quote or a backslash. Otherwise it returns s Go-quoted: control
// characters, line breaks, invalid UTF-8 and other characters that do not
// print (bidirectional overrides, zero-width characters) are escaped
// inside the quotes, and spaces stay inside them.
func Field(s string) string {
	if plain(s) {
		return s
	}
	return strconv.Quote(s)
}

// Cell is Field for a table cell: "-" for an empty value (and Field quotes
// a value that is "-" itself).
func Cell(s string) string {
	if s == "" {
		return "-"
	}
	return Field(s)
}

func plain(s string) bool {
	if s == "" || s == "-" {
		return false
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false // an invalid byte
			}
		}
		if r == ' ' || r == '"' || r == '\\' || !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// Line returns s with every character that does not print (control
// characters, line breaks, tabs, bidirectional overrides, invalid UTF-8)
// written as its Go escape (\x1b, \n, \u202e, ...), and everything else,
// spaces, quotes and backslashes included, as it is. The result is one
// line with nothing in it a terminal acts on. Line(Field(x)) is Field(x).
func Line(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !strconv.IsPrint(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[0])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[0])&0xf, 16))
		case strconv.IsPrint(r):
			b.WriteString(s[:n])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[n:]
	}
	return b.String()
}

package oauth

import (
	"strings"
	"unicode"
)

// Printable returns s without the characters that can make a terminal or a
// log viewer show something other than the text: C0 and C1 controls (ESC
// starts terminal escape sequences; CR and LF forge log lines), the Unicode
// bidirectional overrides, embeddings and isolates (which reorder what is
// shown), and invalid UTF-8. Every provider-supplied string goes through it
// before it is stored or printed.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if !printableRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if printableRune(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func printableRune(r rune) bool {
	switch {
	case r == unicode.ReplacementChar: // also what invalid UTF-8 decodes to
		return false
	case unicode.IsControl(r): // C0, DEL, C1
		return false
	case r == '\u061c', r == '\u200e', r == '\u200f', // ALM, LRM, RLM
		r >= '\u202a' && r <= '\u202e', // LRE, RLE, PDF, LRO, RLO
		r >= '\u2066' && r <= '\u2069': // LRI, RLI, FSI, PDI
		return false
	}
	return true
}

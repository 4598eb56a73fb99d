package ops

import (
	"regexp"
	"strings"
)

// subjectTokenRe is one token of a subject an operator may filter on: the
// characters Levqor's own subjects use, or a wildcard.
var subjectTokenRe = regexp.MustCompile(`^([A-Za-z0-9_-]+|\*|>)$`)

// validFilter reports whether s is a subject filter: dot-separated tokens,
// '*' matching one token and '>' the rest (last token only).
func validFilter(s string) bool {
	if s == "" {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if !subjectTokenRe.MatchString(t) {
			return false
		}
		if t == ">" && i != len(toks)-1 {
			return false
		}
	}
	return true
}

// subjectMatches reports whether subject matches filter with NATS
// semantics.
func subjectMatches(filter, subject string) bool {
	f := strings.Split(filter, ".")
	s := strings.Split(subject, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		if t != "*" && t != s[i] {
			return false
		}
	}
	return len(s) == len(f)
}

// consumerNameRe is what a durable consumer's name looks like.
var consumerNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

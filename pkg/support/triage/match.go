package triage

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// A phrase is a sequence of words matched case-insensitively on word
// boundaries. A word ending in * matches any word it begins ("restor*"
// matches restore, restored, restoring). Punctuation separates words on
// both sides, so "can't" in a rule matches "can't", "can’t" and "CAN'T" in
// a ticket, and "time-sensitive" matches "time sensitive".
type phrase struct {
	words []word
}

type word struct {
	text   string
	prefix bool
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// words splits s into lower-case words.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !isWordRune(r) })
}

func parsePhrase(s string) (phrase, error) {
	fields := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !isWordRune(r) && r != '*' })
	if len(fields) == 0 {
		return phrase{}, errors.New("empty phrase; want words such as \"lost data\"")
	}
	var p phrase
	for _, f := range fields {
		w := word{text: strings.TrimSuffix(f, "*")}
		w.prefix = w.text != f
		if w.text == "" || strings.Contains(w.text, "*") {
			return phrase{}, fmt.Errorf("%q: * may only end a word, as in restor*", s)
		}
		p.words = append(p.words, w)
	}
	return p, nil
}

func (w word) matches(s string) bool {
	if w.prefix {
		return strings.HasPrefix(s, w.text)
	}
	return s == w.text
}

// text is a ticket's subject and body as words, indexed by word. The
// subject and the body are separated by a word no phrase can match, so a
// phrase never spans the two.
type text struct {
	words []string
	at    map[string][]int
}

const fieldBreak = "\x00"

func newText(subject, body string) *text {
	t := &text{words: words(subject), at: map[string][]int{}}
	t.words = append(t.words, fieldBreak)
	t.words = append(t.words, words(body)...)
	for i, w := range t.words {
		t.at[w] = append(t.at[w], i)
	}
	return t
}

// span is an occurrence of a phrase: words [start, end).
type span struct{ start, end int }

func (s span) overlaps(o span) bool { return s.start < o.end && o.start < s.end }

// find returns every occurrence of p.
func (t *text) find(p phrase) []span {
	var starts []int
	first := p.words[0]
	if first.prefix {
		for i, w := range t.words {
			if first.matches(w) {
				starts = append(starts, i)
			}
		}
	} else {
		starts = t.at[first.text]
	}
	var out []span
next:
	for _, i := range starts {
		if i+len(p.words) > len(t.words) {
			continue
		}
		for j, w := range p.words[1:] {
			if !w.matches(t.words[i+1+j]) {
				continue next
			}
		}
		out = append(out, span{i, i + len(p.words)})
	}
	return out
}

// has reports whether p occurs anywhere outside the spans in cancelled.
func (t *text) has(p phrase, cancelled []span) bool {
	for _, s := range t.find(p) {
		ok := true
		for _, c := range cancelled {
			if s.overlaps(c) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

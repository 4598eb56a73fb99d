package stripeevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxDepth is the deepest nesting accepted, as encoding/json's limit: a body
// that encoding/json would refuse is refused here too.
const maxDepth = 10000

// syntaxError describes where a body stops being JSON.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

// fieldError is a well-formed body whose envelope field has the wrong type.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// strClass marks the bytes that end the fast path inside a JSON string: the
// closing quote, a backslash, control characters (invalid in JSON strings)
// and non-ASCII bytes (checked as UTF-8 only where a value is kept).
var strClass = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

// scanner reads one JSON document in a single pass. It validates the whole
// body with the grammar of RFC 8259 (as encoding/json does) while reading
// only the six top-level envelope fields; every other value is checked and
// skipped without being decoded.
type scanner struct {
	b   []byte
	pos int
}

func (s *scanner) fail(msg string) error { return &syntaxError{msg: msg, off: s.pos} }

// isSpace marks JSON's four whitespace bytes.
var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

func (s *scanner) ws() {
	b, i := s.b, s.pos
	for i < len(b) && isSpace[b[i]] {
		i++
	}
	s.pos = i
}

// str scans a string starting at its opening quote and returns its raw
// bytes (between the quotes) and whether they contain escapes.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	s.pos++ // opening quote
	start := s.pos
	for {
		b, i := s.b, s.pos
		for i < len(b) && !strClass[b[i]] {
			i++
		}
		s.pos = i
		if s.pos >= len(s.b) {
			return nil, false, s.fail("unterminated string")
		}
		switch c := s.b[s.pos]; {
		case c == '"':
			raw = s.b[start:s.pos]
			s.pos++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			s.pos++
			if s.pos >= len(s.b) {
				return nil, false, s.fail("unterminated string")
			}
			switch s.b[s.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				s.pos++
				for i := 0; i < 4; i++ {
					if s.pos >= len(s.b) || !isHex(s.b[s.pos]) {
						return nil, false, s.fail("invalid \\u escape in string")
					}
					s.pos++
				}
			default:
				return nil, false, s.fail("invalid escape in string")
			}
		default:
			return nil, false, s.fail("control character in string")
		}
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns it.
func (s *scanner) number() ([]byte, error) {
	start := s.pos
	if s.b[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.b) && s.b[s.pos] == '0':
		s.pos++
	case s.pos < len(s.b) && isDigit(s.b[s.pos]):
		for s.pos < len(s.b) && isDigit(s.b[s.pos]) {
			s.pos++
		}
	default:
		return nil, s.fail("invalid number")
	}
	if s.pos < len(s.b) && s.b[s.pos] == '.' {
		s.pos++
		if s.pos >= len(s.b) || !isDigit(s.b[s.pos]) {
			return nil, s.fail("invalid number")
		}
		for s.pos < len(s.b) && isDigit(s.b[s.pos]) {
			s.pos++
		}
	}
	if s.pos < len(s.b) && (s.b[s.pos] == 'e' || s.b[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.b) && (s.b[s.pos] == '+' || s.b[s.pos] == '-') {
			s.pos++
		}
		if s.pos >= len(s.b) || !isDigit(s.b[s.pos]) {
			return nil, s.fail("invalid number")
		}
		for s.pos < len(s.b) && isDigit(s.b[s.pos]) {
			s.pos++
		}
	}
	return s.b[start:s.pos], nil
}

func (s *scanner) literal(word string) error {
	if len(s.b)-s.pos < len(word) || string(s.b[s.pos:s.pos+len(word)]) != word {
		return s.fail("invalid literal")
	}
	s.pos += len(word)
	return nil
}

// scalar scans a string, number or literal at s.pos.
func (s *scanner) scalar() error {
	if s.pos >= len(s.b) {
		return s.fail("unexpected end of input")
	}
	var err error
	switch c := s.b[s.pos]; {
	case c == '"':
		_, _, err = s.str()
	case c == '-' || isDigit(c):
		_, err = s.number()
	case c == 't':
		err = s.literal("true")
	case c == 'f':
		err = s.literal("false")
	case c == 'n':
		err = s.literal("null")
	default:
		err = s.fail("invalid character " + strconv.QuoteRune(rune(c)) + " looking for a value")
	}
	return err
}

// skip validates and steps over one value of any depth without recursion;
// depth is the nesting of the container holding it.
func (s *scanner) skip(depth int) error {
	if s.pos >= len(s.b) {
		return s.fail("unexpected end of input")
	}
	if c := s.b[s.pos]; c != '{' && c != '[' {
		return s.scalar()
	}
	// closers holds the bracket each open container expects; its first
	// entries live on the stack, so ordinary payloads allocate nothing.
	var buf [64]byte
	closers := buf[:0]
	for {
		// At a value.
		s.ws()
		if s.pos >= len(s.b) {
			return s.fail("unexpected end of input")
		}
		switch s.b[s.pos] {
		case '{', '[':
			if depth+len(closers)+1 > maxDepth {
				return s.fail("exceeded max depth")
			}
			open := s.b[s.pos]
			s.pos++
			s.ws()
			if open == '{' {
				closers = append(closers, '}')
				if s.pos < len(s.b) && s.b[s.pos] == '}' {
					break // empty object: handled below as a closed value
				}
				if err := s.key(); err != nil {
					return err
				}
				continue
			}
			closers = append(closers, ']')
			if s.pos < len(s.b) && s.b[s.pos] == ']' {
				break
			}
			continue
		default:
			if err := s.scalar(); err != nil {
				return err
			}
			s.ws()
		}
		// After a value, or at the closer of an empty container: close
		// containers or move to the next element.
		for {
			if s.pos >= len(s.b) {
				return s.fail("unexpected end of input")
			}
			top := closers[len(closers)-1]
			c := s.b[s.pos]
			if c == top {
				s.pos++
				closers = closers[:len(closers)-1]
				if len(closers) == 0 {
					return nil
				}
				s.ws()
				continue
			}
			if c != ',' {
				return s.fail("invalid character " + strconv.QuoteRune(rune(c)) + " after " + containerName(top) + " element")
			}
			s.pos++
			s.ws()
			if top == '}' {
				if err := s.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

func containerName(closer byte) string {
	if closer == '}' {
		return "object"
	}
	return "array"
}

// key scans `"name" :` inside an object, leaving s.pos at the value.
func (s *scanner) key() error {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return s.fail("expected object key")
	}
	if _, _, err := s.str(); err != nil {
		return err
	}
	s.ws()
	if s.pos >= len(s.b) || s.b[s.pos] != ':' {
		return s.fail("expected colon after object key")
	}
	s.pos++
	s.ws()
	return nil
}

// stringValue scans a string value or null for field and returns it decoded.
// Plain ASCII strings, all a real Stripe envelope holds, are converted
// directly; escapes and non-ASCII go through encoding/json so the result is
// exactly what it would decode (invalid UTF-8 becomes U+FFFD).
func (s *scanner) stringValue(field string) (string, bool, error) {
	if s.pos < len(s.b) && s.b[s.pos] == 'n' {
		return "", false, s.literal("null")
	}
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		if err := s.skip(1); err != nil {
			return "", false, err
		}
		return "", false, &fieldError{field: field, msg: "want a string"}
	}
	start := s.pos
	raw, escaped, err := s.str()
	if err != nil {
		return "", false, err
	}
	if !escaped && ascii(raw) {
		return string(raw), true, nil
	}
	var v string
	if err := json.Unmarshal(s.b[start:s.pos], &v); err != nil {
		return "", false, s.fail("invalid string")
	}
	return v, true, nil
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// keyName returns the decoded object key between quotes.
func keyName(raw []byte, escaped bool) []byte {
	if !escaped {
		return raw
	}
	var v string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	if json.Unmarshal(q, &v) != nil {
		return raw
	}
	return []byte(v)
}

// match reports whether key names field the way encoding/json matches
// struct fields: exactly, or else case-insensitively.
func match(key []byte, field string) bool {
	return len(key) == len(field) && string(key) == field || bytes.EqualFold(key, []byte(field))
}

// envelope scans a whole body: a JSON object with nothing after it. It reads
// the envelope fields (the last occurrence wins, as in encoding/json) and
// validates everything else. A body that is not JSON returns a *syntaxError;
// a JSON body whose envelope field has the wrong type returns a *fieldError
// for the first such field.
func scanEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	s := scanner{b: b}
	s.ws()
	if s.pos >= len(b) {
		return e, s.fail("empty body")
	}
	if b[s.pos] != '{' {
		if err := s.skip(0); err != nil {
			return e, err
		}
		s.ws()
		if s.pos != len(b) {
			return e, s.fail("invalid character after top-level value")
		}
		return e, errNotObject
	}
	s.pos++
	s.ws()
	var typeErr error
	if s.pos < len(b) && b[s.pos] == '}' {
		s.pos++
	} else {
		for {
			if s.pos >= len(b) || b[s.pos] != '"' {
				return e, s.fail("expected object key")
			}
			raw, escaped, err := s.str()
			if err != nil {
				return e, err
			}
			s.ws()
			if s.pos >= len(b) || b[s.pos] != ':' {
				return e, s.fail("expected colon after object key")
			}
			s.pos++
			s.ws()
			if err := s.field(&e, keyName(raw, escaped)); err != nil {
				fe, ok := err.(*fieldError)
				if !ok {
					return e, err
				}
				if typeErr == nil {
					typeErr = fe
				}
			}
			s.ws()
			if s.pos >= len(b) {
				return e, s.fail("unexpected end of input")
			}
			if b[s.pos] == '}' {
				s.pos++
				break
			}
			if b[s.pos] != ',' {
				return e, s.fail("invalid character after object element")
			}
			s.pos++
			s.ws()
		}
	}
	s.ws()
	if s.pos != len(b) {
		return e, s.fail("invalid character after top-level value")
	}
	return e, typeErr
}

var errNotObject = errors.New("not an object")

// field reads the value of top-level key into e when it is an envelope
// field, or skips it.
func (s *scanner) field(e *Envelope, key []byte) error {
	// Case folding can turn one byte into up to three (k → U+212A).
	if len(key) < 2 || len(key) > 3*len("api_version") {
		return s.skip(1)
	}
	var dst *string
	var name string
	switch {
	case match(key, "id"):
		dst, name = &e.ID, "id"
	case match(key, "object"):
		dst, name = &e.Object, "object"
	case match(key, "type"):
		dst, name = &e.Type, "type"
	case match(key, "api_version"):
		dst, name = &e.APIVersion, "api_version"
	case match(key, "created"):
		return s.created(e)
	case match(key, "livemode"):
		return s.livemode(e)
	default:
		return s.skip(1)
	}
	v, set, err := s.stringValue(name)
	if set {
		*dst = v
	}
	return err
}

func (s *scanner) created(e *Envelope) error {
	if s.pos >= len(s.b) {
		return s.fail("unexpected end of input")
	}
	switch c := s.b[s.pos]; {
	case c == 'n':
		return s.literal("null")
	case c == '-' || isDigit(c):
		num, err := s.number()
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return &fieldError{field: "created", msg: "want an integer Unix time, got " + string(num)}
		}
		e.Created = n
		return nil
	}
	if err := s.skip(1); err != nil {
		return err
	}
	return &fieldError{field: "created", msg: "want an integer Unix time"}
}

func (s *scanner) livemode(e *Envelope) error {
	if s.pos >= len(s.b) {
		return s.fail("unexpected end of input")
	}
	switch s.b[s.pos] {
	case 'n':
		return s.literal("null")
	case 't':
		e.Livemode = true
		return s.literal("true")
	case 'f':
		e.Livemode = false
		return s.literal("false")
	}
	if err := s.skip(1); err != nil {
		return err
	}
	return &fieldError{field: "livemode", msg: "want true or false"}
}

package stripesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// A template is a JSON document, already indented the way Stripe indents
// event bodies, cut at its placeholders. A placeholder is a JSON string
// "{{name}}" in the source; rendering replaces the whole string, quotes
// included, with the raw JSON value of the variable, so one placeholder can
// stand for a string, a number, a boolean, null or an object.
type template struct {
	segs []segment
	size int // bytes of literal text, to size output buffers
}

// segment is literal text followed by an optional variable.
type segment struct {
	lit string
	v   varID
	// sub renders the variable's object when the variable's value is
	// useSubTemplate; it is compiled at the indentation of its position.
	sub *template
}

// indentUnit is Stripe's indentation: two spaces per level.
const indentUnit = "  "

// objectPrefix is the indentation of data.object and
// data.previous_attributes inside the event envelope.
const objectPrefix = "    "

// compileTemplate indents src with prefix and cuts it at its placeholders.
// It panics on a malformed template or an unknown placeholder: templates
// are constants, so that is a programming error caught by any test.
func compileTemplate(name, src, prefix string) *template {
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(src), prefix, indentUnit); err != nil {
		panic(fmt.Sprintf("stripesim: template %s is not valid JSON: %v", name, err))
	}
	text := buf.String()
	t := &template{}
	for {
		i := strings.Index(text, `"{{`)
		if i < 0 {
			break
		}
		j := strings.Index(text[i:], `}}"`)
		if j < 0 {
			panic(fmt.Sprintf("stripesim: template %s has an unterminated placeholder", name))
		}
		varName := text[i+3 : i+j]
		v, ok := varIndex[varName]
		if !ok {
			panic(fmt.Sprintf("stripesim: template %s uses unknown variable %q", name, varName))
		}
		if strings.Contains(text[:i], "{{") {
			panic(fmt.Sprintf("stripesim: template %s has a placeholder inside a string", name))
		}
		seg := segment{lit: text[:i], v: v}
		if sub := varDefs[v].sub; sub != "" {
			lineStart := strings.LastIndexByte(text[:i], '\n') + 1
			linePrefix := text[lineStart:i]
			linePrefix = linePrefix[:len(linePrefix)-len(strings.TrimLeft(linePrefix, " "))]
			seg.sub = compileTemplate(name+"/"+varName, sub, linePrefix)
		}
		t.segs = append(t.segs, seg)
		t.size += i
		text = text[i+j+3:]
	}
	if strings.Contains(text, "{{") {
		panic(fmt.Sprintf("stripesim: template %s has a placeholder inside a string", name))
	}
	t.segs = append(t.segs, segment{lit: text, v: noVar})
	t.size += len(text)
	return t
}

// render appends the template, with b's variables substituted, to dst.
func (t *template) render(dst []byte, b *builder) []byte {
	for i := range t.segs {
		s := &t.segs[i]
		dst = append(dst, s.lit...)
		switch {
		case s.v == noVar:
		case s.v == vObject && b.vals[vObject] == nil:
			dst = b.spec.kind.tmpl.render(dst, b)
		default:
			val := b.get(s.v)
			if isSubTemplate(val) {
				dst = s.sub.render(dst, b)
			} else {
				dst = append(dst, val...)
			}
		}
	}
	return dst
}

// estimate is a generous guess of the rendered size, so that rendering
// allocates the output once.
func (t *template) estimate() int {
	n := t.size
	for _, s := range t.segs {
		if s.sub != nil {
			n += s.sub.estimate()
		} else if s.v != noVar {
			n += 32
		}
	}
	return n
}

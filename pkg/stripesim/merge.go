package stripesim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errNotObject is returned when Data or PreviousAttributes is valid JSON
// but not an object.
var errNotObject = errors.New("not a JSON object")

// member is one key of a JSON object. Objects are kept as ordered members
// rather than maps so that a merged object keeps Stripe's field order.
type member struct {
	key string
	val any
}

// jsonObject is a decoded JSON object in document order. Other values
// decode to []any, string, json.Number, bool or nil.
type jsonObject []member

// mergeObject deep-merges patch into the JSON object obj and returns the
// result indented with prefix.
func mergeObject(obj, patch []byte, prefix string) ([]byte, error) {
	base, err := decodeObject(obj)
	if err != nil {
		return nil, fmt.Errorf("decoding object: %w", err)
	}
	p, err := decodeObject(patch)
	if err != nil {
		return nil, err
	}
	base = mergeInto(base, p)
	return indentCompact(appendValue(nil, base), prefix)
}

// mergeInto merges patch into dst: where both hold an object under the
// same key the objects merge, otherwise patch's value replaces dst's or is
// appended.
func mergeInto(dst, patch jsonObject) jsonObject {
	for _, m := range patch {
		i := dst.index(m.key)
		if i < 0 {
			dst = append(dst, m)
			continue
		}
		d, dok := dst[i].val.(jsonObject)
		p, pok := m.val.(jsonObject)
		if dok && pok {
			dst[i].val = mergeInto(d, p)
		} else {
			dst[i].val = m.val
		}
	}
	return dst
}

func (o jsonObject) index(key string) int {
	for i := range o {
		if o[i].key == key {
			return i
		}
	}
	return -1
}

// indentObject checks that raw is a JSON object and indents it with prefix.
func indentObject(raw []byte, prefix string) ([]byte, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if compact.Len() == 0 || compact.Bytes()[0] != '{' {
		return nil, errNotObject
	}
	return indentCompact(compact.Bytes(), prefix)
}

func indentCompact(compact []byte, prefix string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(compact) * 2)
	if err := json.Indent(&out, compact, prefix, indentUnit); err != nil {
		return nil, fmt.Errorf("indenting: %w", err)
	}
	return out.Bytes(), nil
}

// decodeObject decodes a JSON document that must be one object.
func decodeObject(data []byte) (jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	obj, ok := v.(jsonObject)
	if !ok {
		return nil, errNotObject
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch delim {
	case '{':
		obj := jsonObject{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key is %v, not a string", kt)
			}
			val, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			// A repeated key replaces the earlier value, as in
			// encoding/json.
			if i := obj.index(key); i >= 0 {
				obj[i].val = val
			} else {
				obj = append(obj, member{key: key, val: val})
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			val, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, val)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("unexpected %v", delim)
	}
}

// appendValue appends v as compact JSON.
func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case jsonObject:
		dst = append(dst, '{')
		for i, m := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, m.key)
			dst = append(dst, ':')
			dst = appendValue(dst, m.val)
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, e)
		}
		return append(dst, ']')
	case string:
		return appendJSONString(dst, v)
	case json.Number:
		return append(dst, v...)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case nil:
		return append(dst, "null"...)
	default:
		// decodeValue produces only the types above.
		panic(fmt.Sprintf("stripesim: unexpected JSON value %T", v))
	}
}

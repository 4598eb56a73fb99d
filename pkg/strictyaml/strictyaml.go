// Package strictyaml reads operator-edited configuration files (the product
// catalog, the support rules) as YAML or JSON with JSON's strict decoding:
// the YAML is turned into JSON once, so a file's types declare their JSON
// form only and an unknown key is an error rather than silently ignored.
package strictyaml

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ToJSON parses YAML (JSON is YAML) and returns it as JSON, along with the
// generic tree it was built from (for callers that locate errors in it).
func ToJSON(data []byte) ([]byte, any, error) {
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return nil, nil, err
	}
	generic = jsonable(generic)
	js, err := json.Marshal(generic)
	if err != nil {
		return nil, nil, err
	}
	return js, generic, nil
}

// Decode reads YAML or JSON into v, refusing unknown fields.
func Decode(data []byte, v any) error {
	js, _, err := ToJSON(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// jsonable turns YAML's map trees into JSON-encodable values.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
		return t
	default:
		return v
	}
}

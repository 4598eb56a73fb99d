package retention

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Snapshot is what the engine needs to know about one backup snapshot.
type Snapshot struct {
	// ID names the snapshot; it must be unique in a plan. Among snapshots
	// taken at the same instant, the smaller ID (byte order) counts as
	// the newer one.
	ID string `json:"id"`
	// Time is when the snapshot was taken, with the UTC offset it was
	// recorded in: hours, days, weeks, months and years are read in that
	// offset.
	Time time.Time `json:"time"`
	// Tags are free-form labels matched by the keep_tags rule.
	Tags []string `json:"tags,omitempty"`
}

// snapshotJSON holds one element of the snapshots list before checking.
type snapshotJSON struct {
	ID   json.RawMessage `json:"id"`
	Time json.RawMessage `json:"time"`
	Tags json.RawMessage `json:"tags"`
}

// ParseSnapshots reads a JSON list of snapshots,
// [{"id": "…", "time": "RFC 3339 with offset", "tags": ["…"]}], strictly:
// unknown fields, a missing or empty id, a missing time or one without a
// UTC offset, empty tags and duplicate ids are *FieldErrors naming the
// element ("snapshots[3].time") and its id.
func ParseSnapshots(data []byte) ([]Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr("snapshots", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fieldErr("snapshots", `want a JSON list such as [{"id": "a1", "time": "2026-10-25T01:30:00+01:00"}]`)
	}
	var out []Snapshot
	index := map[string]int{}
	for i := 0; dec.More(); i++ {
		field := fmt.Sprintf("snapshots[%d]", i)
		var raw snapshotJSON
		if err := dec.Decode(&raw); err != nil {
			return nil, snapshotDecodeErr(field, err)
		}
		s, err := raw.snapshot(field)
		if err != nil {
			return nil, err
		}
		if j, dup := index[s.ID]; dup {
			return nil, fieldErr(field+".id", "duplicate snapshot id %q (also snapshots[%d])", s.ID, j)
		}
		index[s.ID] = i
		out = append(out, s)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, jsonErr("snapshots", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr("snapshots", "unexpected data after the list")
	}
	if out == nil {
		out = []Snapshot{}
	}
	return out, nil
}

func snapshotDecodeErr(field string, err error) *FieldError {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fieldErr(field, "want an object with id, time and tags, got a JSON %s", typ.Value)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fieldErr(field, "unknown field %s (known: id, time, tags)", strings.TrimPrefix(msg, "json: unknown field "))
	}
	return jsonErr(field, err)
}

func (r snapshotJSON) snapshot(field string) (Snapshot, error) {
	var s Snapshot
	if len(r.ID) == 0 || r.ID[0] != '"' || json.Unmarshal(r.ID, &s.ID) != nil || s.ID == "" {
		return Snapshot{}, fieldErr(field+".id", "want a non-empty id string, got %s", clip(r.ID))
	}
	var ts string
	if len(r.Time) == 0 || string(r.Time) == "null" {
		return Snapshot{}, fieldErr(field+".time", "snapshot %q has no time", s.ID)
	}
	if r.Time[0] != '"' || json.Unmarshal(r.Time, &ts) != nil {
		return Snapshot{}, fieldErr(field+".time", "snapshot %q: want an RFC 3339 string, got %s", s.ID, clip(r.Time))
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Snapshot{}, fieldErr(field+".time", "snapshot %q: want RFC 3339 with a UTC offset such as 2026-10-25T01:30:00+01:00, got %q", s.ID, ts)
	}
	s.Time = t
	if len(r.Tags) > 0 && string(r.Tags) != "null" {
		var tags []json.RawMessage
		if r.Tags[0] != '[' || json.Unmarshal(r.Tags, &tags) != nil {
			return Snapshot{}, fieldErr(field+".tags", "snapshot %q: want a list of strings, got %s", s.ID, clip(r.Tags))
		}
		for j, t := range tags {
			var tag string
			if t[0] != '"' || json.Unmarshal(t, &tag) != nil || tag == "" {
				return Snapshot{}, fieldErr(fmt.Sprintf("%s.tags[%d]", field, j), "snapshot %q: want a non-empty tag string, got %s", s.ID, clip(t))
			}
			s.Tags = append(s.Tags, tag)
		}
	}
	return s, nil
}

// validateSnapshots checks snapshots built in Go the way ParseSnapshots
// checks JSON.
func validateSnapshots(snaps []Snapshot) error {
	index := make(map[string]int, len(snaps))
	field := func(i int, sub string) string { return fmt.Sprintf("snapshots[%d]%s", i, sub) }
	for i, s := range snaps {
		if s.ID == "" {
			return fieldErr(field(i, ".id"), "empty snapshot id")
		}
		if j, dup := index[s.ID]; dup {
			return fieldErr(field(i, ".id"), "duplicate snapshot id %q (also snapshots[%d])", s.ID, j)
		}
		index[s.ID] = i
		if s.Time.IsZero() {
			return fieldErr(field(i, ".time"), "snapshot %q has no time", s.ID)
		}
		for j, t := range s.Tags {
			if t == "" {
				return fieldErr(field(i, fmt.Sprintf(".tags[%d]", j)), "snapshot %q: empty tag", s.ID)
			}
		}
	}
	return nil
}

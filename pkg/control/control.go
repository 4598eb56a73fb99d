// Package control holds what operators switch at run time: paused jobs
// and paused consumers. The state lives in a JetStream key-value bucket
// (<prefix>_control), so every scheduler and worker replica sees a change
// within moments, without a database, and it survives restarts. A key is
// "schedule.<job>" or "consumer.<name>"; its value says who paused it,
// when and why; deleting it resumes.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
)

// Pause is an operator's pause of a job or a consumer.
type Pause struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// JobKey and ConsumerKey are the bucket's keys of a job and a consumer.
func JobKey(job string) string       { return "schedule." + job }
func ConsumerKey(name string) string { return "consumer." + name }

// Bucket is the key-value bucket of a deployment's subject prefix.
func Bucket(topo bus.Topology) string {
	return strings.ReplaceAll(topo.WithDefaults().Prefix, ".", "_") + "_control"
}

// Control reads and changes the pauses. Watch keeps a copy in memory for
// the hot paths (Paused is called before every fetch and every slot).
type Control struct {
	kv  jetstream.KeyValue
	log logrus.FieldLogger

	mu     sync.RWMutex
	paused map[string]Pause
}

// Open creates the bucket if it is missing and returns its Control. It
// never changes an existing bucket: the services' NATS users may only
// create it.
func Open(ctx context.Context, js jetstream.JetStream, topo bus.Topology, log logrus.FieldLogger) (*Control, error) {
	topo = topo.WithDefaults()
	kv, err := js.KeyValue(ctx, Bucket(topo))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: Bucket(topo), Description: "Levqor's paused jobs and consumers", History: 1, Replicas: topo.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, Bucket(topo)) // another process made it first
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the control bucket %s: %w", Bucket(topo), err)
	}
	return &Control{kv: kv, log: log, paused: map[string]Pause{}}, nil
}

// Watch keeps the in-memory copy current until ctx ends; it returns once
// the copy holds the bucket's state at the time of the call.
func (c *Control) Watch(ctx context.Context) error {
	w, err := c.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching the control bucket: %w", err)
	}
	apply := func(e jetstream.KeyValueEntry) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if e.Operation() != jetstream.KeyValuePut {
			delete(c.paused, e.Key())
			c.log.WithField("key", e.Key()).Info("resumed by an operator")
			return
		}
		var p Pause
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			c.log.WithError(err).WithField("key", e.Key()).Warn("unreadable pause; treated as paused")
		}
		c.paused[e.Key()] = p
		c.log.WithFields(logrus.Fields{"key": e.Key(), "by": p.By, "reason": p.Reason}).Warn("paused by an operator")
	}
	for e := range w.Updates() {
		if e == nil { // the initial state is all in
			break
		}
		apply(e)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					apply(e)
				}
			}
		}
	}()
	return nil
}

// Paused reports whether key is paused, from the watched copy.
func (c *Control) Paused(key string) bool {
	if c == nil {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.paused[key]
	return ok
}

// Set pauses key. It reports false when key was paused already (the
// pause is then left as it was).
func (c *Control) Set(ctx context.Context, key string, p Pause) (bool, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	_, err = c.kv.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pausing %s: %w", key, err)
	}
	return true, nil
}

// Clear resumes key. It reports false when key was not paused.
func (c *Control) Clear(ctx context.Context, key string) (bool, error) {
	if _, err := c.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("resuming %s: %w", key, err)
	}
	if err := c.kv.Delete(ctx, key); err != nil {
		return false, fmt.Errorf("resuming %s: %w", key, err)
	}
	return true, nil
}

// List reads every pause from the bucket.
func (c *Control) List(ctx context.Context) (map[string]Pause, error) {
	out := map[string]Pause{}
	keys, err := c.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing pauses: %w", err)
	}
	for k := range keys.Keys() {
		e, err := c.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading pause %s: %w", k, err)
		}
		var p Pause
		_ = json.Unmarshal(e.Value(), &p)
		out[k] = p
	}
	return out, nil
}

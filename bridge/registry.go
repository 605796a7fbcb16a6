package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "1m30s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration must be a string like \"30s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Watch is one registration: a job to track and the options for it.
type Watch struct {
	Vendor   string `json:"vendor"`
	Instance string `json:"instance"`
	Job      string `json:"job"`
	// Interval overrides the instance's poll interval for this job.
	Interval Duration `json:"interval,omitempty"`
	// StalledAfter overrides the stalled bound for this job.
	StalledAfter Duration `json:"stalledAfter,omitempty"`
	// Deadline, when set, produces a deadline_missed event if the job is
	// not terminal by then.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Labels are copied into every event's data.
	Labels map[string]string `json:"labels,omitempty"`
	// VendorOptions carry what one vendor needs per job, e.g. the HMC
	// notification topic of the session that started the job
	// ("notifyTopic"), since the HMC pushes a completion only there.
	VendorOptions map[string]string `json:"vendorOptions,omitempty"`
	// Origin says who added it: config, api, cli or discovery.
	Origin  string    `json:"origin,omitempty"`
	AddedAt time.Time `json:"addedAt"`
}

// Ref returns the job the watch names.
func (w Watch) Ref() JobRef { return JobRef{Vendor: w.Vendor, Instance: w.Instance, ID: w.Job} }

// MaxLabels bounds labels per watch; MaxLabelBytes bounds each key and value.
const (
	MaxLabels     = 32
	MaxLabelBytes = 256
)

// Validate checks a watch before it is stored.
func (w Watch) Validate() error {
	if err := w.Ref().Validate(); err != nil {
		return err
	}
	if w.Interval < 0 || (w.Interval > 0 && time.Duration(w.Interval) < 100*time.Millisecond) {
		return fmt.Errorf("interval %s: use at least 100ms, or leave it empty for the instance default", time.Duration(w.Interval))
	}
	if w.StalledAfter < 0 {
		return errors.New("stalledAfter must not be negative")
	}
	if len(w.Labels) > MaxLabels {
		return fmt.Errorf("%d labels: at most %d are allowed", len(w.Labels), MaxLabels)
	}
	if len(w.VendorOptions) > MaxLabels {
		return fmt.Errorf("%d vendor options: at most %d are allowed", len(w.VendorOptions), MaxLabels)
	}
	for k, v := range w.VendorOptions {
		if k == "" || len(k) > MaxLabelBytes || len(v) > MaxLabelBytes {
			return fmt.Errorf("vendor option %q: keys must be 1-%d bytes and values at most %d bytes", truncate(k, 40), MaxLabelBytes, MaxLabelBytes)
		}
	}
	for k, v := range w.Labels {
		if k == "" || len(k) > MaxLabelBytes || len(v) > MaxLabelBytes {
			return fmt.Errorf("label %q: keys must be 1-%d bytes and values at most %d bytes", truncate(k, 40), MaxLabelBytes, MaxLabelBytes)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sameOptions reports whether two registrations of one job ask for the same.
func (w Watch) sameOptions(o Watch) bool {
	return w.Interval == o.Interval && w.StalledAfter == o.StalledAfter &&
		((w.Deadline == nil && o.Deadline == nil) || (w.Deadline != nil && o.Deadline != nil && w.Deadline.Equal(*o.Deadline))) &&
		maps.Equal(w.Labels, o.Labels) && maps.Equal(w.VendorOptions, o.VendorOptions)
}

// Registry stores watches in a JetStream KV bucket, so that registrations
// survive restarts and reach every replica.
type Registry struct {
	kv jetstream.KeyValue
}

// NewRegistry wraps a KV bucket.
func NewRegistry(kv jetstream.KeyValue) *Registry { return &Registry{kv: kv} }

// ErrWatchNotFound is returned for a job that is not watched.
var ErrWatchNotFound = errors.New("job is not watched")

// Add registers a watch. Adding a job that is already watched with the same
// options changes nothing and reports created=false; different options
// replace the old ones.
func (r *Registry) Add(ctx context.Context, w Watch) (stored Watch, created bool, err error) {
	if err := w.Validate(); err != nil {
		return Watch{}, false, validationError{err}
	}
	if w.AddedAt.IsZero() {
		w.AddedAt = time.Now().UTC()
	}
	key := w.Ref().Key()
	for attempt := 0; attempt < 5; attempt++ {
		val, err := json.Marshal(w)
		if err != nil {
			return Watch{}, false, fmt.Errorf("encode watch: %w", err)
		}
		if _, err = r.kv.Create(ctx, key, val); err == nil {
			return w, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Watch{}, false, fmt.Errorf("store watch for %s: %w", w.Ref(), err)
		}
		entry, err := r.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile: create again
		}
		if err != nil {
			return Watch{}, false, fmt.Errorf("read watch for %s: %w", w.Ref(), err)
		}
		var old Watch
		if err := json.Unmarshal(entry.Value(), &old); err != nil {
			return Watch{}, false, fmt.Errorf("stored watch for %s is corrupt (%v): remove it with 'jobbridge watch rm'", w.Ref(), err)
		}
		if old.sameOptions(w) {
			return old, false, nil
		}
		w.AddedAt = old.AddedAt
		val, _ = json.Marshal(w)
		if _, err := r.kv.Update(ctx, key, val, entry.Revision()); err == nil {
			return w, false, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Watch{}, false, fmt.Errorf("update watch for %s: %w", w.Ref(), err)
		}
	}
	return Watch{}, false, fmt.Errorf("watch for %s changed concurrently five times; try again", w.Ref())
}

// Remove deletes a watch. Removing a job that is not watched is an error
// wrapping ErrWatchNotFound.
func (r *Registry) Remove(ctx context.Context, job JobRef) error {
	key := job.Key()
	if _, err := r.kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%s: %w", job, ErrWatchNotFound)
		}
		return fmt.Errorf("read watch for %s: %w", job, err)
	}
	if err := r.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("remove watch for %s: %w", job, err)
	}
	return nil
}

// Get returns one watch.
func (r *Registry) Get(ctx context.Context, job JobRef) (Watch, error) {
	entry, err := r.kv.Get(ctx, job.Key())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Watch{}, fmt.Errorf("%s: %w", job, ErrWatchNotFound)
	}
	if err != nil {
		return Watch{}, fmt.Errorf("read watch for %s: %w", job, err)
	}
	var w Watch
	if err := json.Unmarshal(entry.Value(), &w); err != nil {
		return Watch{}, fmt.Errorf("stored watch for %s is corrupt: %w", job, err)
	}
	return w, nil
}

// ListFilter selects watches; empty fields match anything.
type ListFilter struct {
	Vendor   string `json:"vendor,omitempty"`
	Instance string `json:"instance,omitempty"`
	// After continues a listing after this job key (paging).
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// List returns watches in key order, at most Limit (default 100, max 1000),
// and the key to pass as After for the next page ("" when done).
func (r *Registry) List(ctx context.Context, f ListFilter) ([]Watch, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	filter := ">"
	if f.Vendor != "" {
		filter = EscapeToken(f.Vendor) + ".>"
		if f.Instance != "" {
			filter = EscapeToken(f.Vendor) + "." + EscapeToken(f.Instance) + ".>"
		}
	}
	lister, err := r.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("list watches: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		if strings.HasPrefix(k, "_") {
			continue
		}
		if f.After != "" && k <= f.After {
			continue
		}
		keys = append(keys, k)
	}
	_ = lister.Stop()
	slices.Sort(keys)
	next := ""
	if len(keys) > f.Limit {
		keys = keys[:f.Limit]
		next = keys[len(keys)-1]
	}
	out := make([]Watch, 0, len(keys))
	for _, k := range keys {
		entry, err := r.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("read watch %s: %w", k, err)
		}
		var w Watch
		if err := json.Unmarshal(entry.Value(), &w); err != nil {
			continue
		}
		out = append(out, w)
	}
	return out, next, nil
}

// parseKey turns a bucket key back into a job.
func parseKey(key string) (JobRef, error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 && len(parts) != 4 {
		return JobRef{}, fmt.Errorf("key %q: want 3 or 4 tokens", key)
	}
	var vals [4]string
	for i, p := range parts {
		v, err := UnescapeToken(p)
		if err != nil {
			return JobRef{}, fmt.Errorf("key %q: %w", key, err)
		}
		vals[i] = v
	}
	return JobRef{Vendor: vals[0], Instance: vals[1], ID: vals[2], Task: vals[3]}, nil
}

package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

// Limits enforced here rather than discovered at the first publish.
const (
	maxReplicas = 5 // JetStream's limit
	// maxRawPayloadCap leaves room in NATS's default 1 MiB max_payload for
	// the payload's JSON escaping and the rest of the event.
	maxRawPayloadCap = 512 << 10
)

// validName checks a name that becomes a JetStream stream or bucket name or
// a NATS micro service name: ^[A-Za-z0-9_-]+$, what all three accept.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validate(c *Config, env func(string) (string, bool), r *report) {
	if strings.TrimSpace(c.DataDir) == "" {
		r.errorf("dataDir", "is empty; give a directory jobbridge may write to, such as \"./data\"")
	}
	oneOf(r, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(r, "log.format", c.Log.Format, "auto", "json", "console")
	validateNATS(&c.NATS, r)
	validateStream(&c.Stream, c.NATS.URL == "", r)
	validatePublish(&c.Publish, r)
	validateSchedule(&c.Schedule, r)
	validateHTTP(&c.HTTP, r)
	if c.WatchAPI.Enabled && !validName(c.WatchAPI.ServiceName) {
		r.errorf("watchAPI.serviceName", "%q is not a NATS service name; use letters, digits, '-' and '_'", c.WatchAPI.ServiceName)
	}
	validateCluster(&c.Cluster, r)
	validateInstances(c, r)
	validateSecrets(c, env, r)
}

// maxShards bounds cluster.shards: each shard is a lease renewed every
// leaseTTL/4, so the lease traffic grows with it.
const maxShards = 4096

func validateCluster(c *Cluster, r *report) {
	if c.Shards < 1 || c.Shards > maxShards {
		r.errorf("cluster.shards", "%d is not allowed; use 1 to %d (64 suits up to a few dozen replicas)", c.Shards, maxShards)
	}
	if !validName(c.LeaseBucket) {
		r.errorf("cluster.leaseBucket", "%q is not a bucket name; use letters, digits, '-' and '_'", c.LeaseBucket)
	}
	if c.ReplicaID != "" && (!validName(c.ReplicaID) || len(c.ReplicaID) > 64) {
		r.errorf("cluster.replicaID", "%q is not allowed; use 1-64 letters, digits, '-' and '_', or leave it empty for host name plus a random suffix", c.ReplicaID)
	}
	if c.LeaseTTL < Duration(time.Second) {
		r.errorf("cluster.leaseTTL", "%q is not allowed; use at least \"1s\" (15s suits most sites)", c.LeaseTTL.String())
	}
}

func oneOf(r *report, path, got string, allowed ...string) {
	if slices.Contains(allowed, got) {
		return
	}
	msg := fmt.Sprintf("%q is not allowed; use one of %s", got, strings.Join(allowed, ", "))
	if got == "" {
		msg = "is required; use one of " + strings.Join(allowed, ", ")
	} else if s := suggest(got, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	r.errorf(path, "%s", msg)
}

func positive(r *report, path string, d Duration) bool {
	if d <= 0 {
		r.errorf(path, "%q is not allowed; use a duration greater than 0, such as \"10s\"", d.String())
		return false
	}
	return true
}

func nonNegative(r *report, path string, d Duration, zero string) {
	if d < 0 {
		r.errorf(path, "%q is not allowed; use a duration of 0 (%s) or more", d.String(), zero)
	}
}

func atLeast(r *report, path string, got, lowest int64) {
	if got < lowest {
		r.errorf(path, "%d is not allowed; use %d or more", got, lowest)
	}
}

func validateNATS(n *NATS, r *report) {
	if strings.TrimSpace(n.Name) == "" {
		r.errorf("nats.name", "is empty; give the connection a name, such as \"jobbridge\"")
	}
	validateTLS(r, "nats.tls", n.TLS)
	for _, k := range []struct{ key, file string }{{"credsFile", n.CredsFile}, {"nkeyFile", n.NKeyFile}} {
		if k.file != "" {
			if err := readable(k.file); err != nil {
				r.errorf("nats."+k.key, "%v", err)
			}
		}
	}

	if n.URL == "" {
		// The embedded server has no client authentication to offer, so
		// credentials without a URL mean a server was meant but not named.
		for _, k := range []struct {
			key string
			set bool
		}{
			{"user", n.User != ""}, {"password", !n.Password.IsZero()}, {"token", !n.Token.IsZero()},
			{"credsFile", n.CredsFile != ""}, {"nkeyFile", n.NKeyFile != ""},
			{"tls", n.TLS != (TLS{})},
		} {
			if k.set {
				r.errorf("nats."+k.key, "is set but nats.url is empty, so jobbridge would start its embedded server and not use it; set nats.url to the server it is for")
			}
		}
		if host, ok := checkListen(r, "nats.embedded.listen", n.Embedded.Listen); ok && !isLoopback(host) {
			r.warnf("nats.embedded.listen", "%q accepts connections from other hosts and the embedded server asks for no credentials", n.Embedded.Listen)
		}
		if strings.TrimSpace(n.Embedded.StoreDir) == "" {
			r.errorf("nats.embedded.storeDir", "is empty; give a directory for the JetStream store")
		}
		return
	}

	if r.set("nats.embedded") {
		r.warnf("nats.embedded", "is ignored because nats.url is set")
	}
	for _, raw := range strings.Split(n.URL, ",") {
		raw = strings.TrimSpace(raw)
		s := raw
		if !strings.Contains(s, "://") {
			s = "nats://" + s // as nats.go reads a bare host:port
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			r.errorf("nats.url", "%q is not a NATS server URL; use nats://host:4222 (or tls://, ws://, wss://), several separated by commas", redactURL(raw))
			continue
		}
		if !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			r.errorf("nats.url", "%q: scheme %q is not allowed; use nats, tls, ws or wss", redactURL(raw), u.Scheme)
		}
		if u.User != nil {
			r.warnf("nats.url", "%q carries credentials; move them to nats.user with nats.password: {env: NAME}, or nats.token", redactURL(raw))
		}
	}
	var methods []string
	if n.User != "" || !n.Password.IsZero() {
		methods = append(methods, "user+password")
		switch {
		case n.User == "":
			r.errorf("nats.user", "is required with nats.password")
		case n.Password.IsZero():
			r.errorf("nats.password", "is required with nats.user; write password: {env: NAME} or {file: PATH}")
		}
	}
	for _, m := range []struct {
		name string
		set  bool
	}{{"token", !n.Token.IsZero()}, {"credsFile", n.CredsFile != ""}, {"nkeyFile", n.NKeyFile != ""}} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		r.errorf("nats", "sets %s; choose one way to authenticate", strings.Join(methods, " and "))
	}
}

func validateTLS(r *report, path string, t TLS) {
	for _, k := range []struct{ key, file string }{{"caFile", t.CAFile}, {"certFile", t.CertFile}, {"keyFile", t.KeyFile}} {
		if k.file == "" {
			continue
		}
		if err := readable(k.file); err != nil {
			r.errorf(path+"."+k.key, "%v", err)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		r.errorf(path+".keyFile", "is required with certFile: a client certificate needs its key")
	case t.CertFile == "" && t.KeyFile != "":
		r.errorf(path+".certFile", "is required with keyFile: a key needs its client certificate")
	}
	if t.InsecureSkipVerify {
		r.warnf(path+".insecureSkipVerify", "is true: the server's certificate is not checked, so anyone on the network path can pose as the server and read the credentials sent to it. This is dangerous; give caFile instead")
	}
}

// readable checks that a file named in the configuration can be opened now,
// so that a typo fails start-up rather than the first connection.
func readable(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("cannot read file %q: %s", name, pathErrText(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read file %q: %s", name, pathErrText(err))
	}
	if fi.IsDir() {
		return fmt.Errorf("%q is a directory; name a file", name)
	}
	return nil
}

// checkListen checks a host:port listen address and returns its host.
func checkListen(r *report, path, addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		r.errorf(path, "%q is not host:port; use an address such as \"127.0.0.1:9090\" or \":9090\"", addr)
		return "", false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		r.errorf(path, "%q: port %q is not a number from 0 to 65535", addr, port)
		return "", false
	}
	return host, true
}

// isLoopback reports whether host is reachable from this machine only. An
// empty host listens on every interface; an unknown name might resolve
// anywhere, so it does not count.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateStream(s *Stream, embedded bool, r *report) {
	if !validName(s.Name) {
		r.errorf("stream.name", "%q is not a stream name; use letters, digits, '-' and '_'", s.Name)
	}
	if err := bridge.ValidatePrefix(s.SubjectPrefix); err != nil {
		r.errorf("stream.subjectPrefix", "%v", err)
	}
	switch {
	case s.Replicas < 1 || s.Replicas > maxReplicas:
		r.errorf("stream.replicas", "%d is not allowed; use 1 to %d", s.Replicas, maxReplicas)
	case embedded && s.Replicas > 1:
		r.errorf("stream.replicas", "%d needs a NATS cluster, but nats.url is empty and the embedded server is a single server; use 1", s.Replicas)
	}
	nonNegative(r, "stream.maxAge", s.MaxAge, "keep events forever")
	if positive(r, "stream.duplicateWindow", s.DuplicateWindow) && s.MaxAge > 0 && s.DuplicateWindow > s.MaxAge {
		r.errorf("stream.duplicateWindow", "%q is longer than stream.maxAge %q; JetStream needs duplicateWindow <= maxAge", s.DuplicateWindow.String(), s.MaxAge.String())
	}
	oneOf(r, "stream.storage", s.Storage, "file", "memory")
	for _, b := range []struct{ key, name string }{{"stateBucket", s.StateBucket}, {"watchBucket", s.WatchBucket}} {
		if !validName(b.name) {
			r.errorf("stream."+b.key, "%q is not a bucket name; use letters, digits, '-' and '_'", b.name)
		}
	}
	if s.StateBucket != "" && s.StateBucket == s.WatchBucket {
		r.errorf("stream.watchBucket", "%q is also stream.stateBucket; the two buckets must differ", s.WatchBucket)
	}
}

func validatePublish(p *Publish, r *report) {
	oneOf(r, "publish.mode", p.Mode, "structured", "binary")
	atLeast(r, "publish.maxInFlight", int64(p.MaxInFlight), 1)
	if p.MaxInFlight >= 1 && p.MaxPending < p.MaxInFlight {
		r.errorf("publish.maxPending", "%d is less than publish.maxInFlight (%d); the pending queue includes what is in flight, so use %d or more", p.MaxPending, p.MaxInFlight, p.MaxInFlight)
	}
	positive(r, "publish.ackTimeout", p.AckTimeout)
	if p.RawPayloadCap < 0 || p.RawPayloadCap > maxRawPayloadCap {
		r.errorf("publish.rawPayloadCap", "%d is not allowed; use 0 (leave the payload out) to %d bytes", p.RawPayloadCap, maxRawPayloadCap)
	}
	positive(r, "publish.flushInterval", p.FlushInterval)
}

func validateSchedule(s *Schedule, r *report) {
	okFast := positive(r, "schedule.fastInterval", s.FastInterval)
	okInterval := positive(r, "schedule.interval", s.Interval)
	okIdle := positive(r, "schedule.idleInterval", s.IdleInterval)
	if okFast && okInterval && s.FastInterval > s.Interval {
		r.errorf("schedule.fastInterval", "%q is longer than schedule.interval %q; fastInterval <= interval <= idleInterval must hold", s.FastInterval.String(), s.Interval.String())
	}
	if okInterval && okIdle && s.Interval > s.IdleInterval {
		r.errorf("schedule.idleInterval", "%q is shorter than schedule.interval %q; fastInterval <= interval <= idleInterval must hold", s.IdleInterval.String(), s.Interval.String())
	}
	nonNegative(r, "schedule.fastFor", s.FastFor, "never poll fast")
	nonNegative(r, "schedule.idleAfter", s.IdleAfter, "never idle")
	if !(s.Jitter >= 0 && s.Jitter <= 0.5) { // also refuses NaN
		r.errorf("schedule.jitter", "%v is not allowed; use a fraction from 0 to 0.5", s.Jitter)
	}
	if positive(r, "schedule.errorBackoffMax", s.ErrorBackoffMax) && okInterval && s.ErrorBackoffMax < s.Interval {
		r.errorf("schedule.errorBackoffMax", "%q is shorter than schedule.interval %q; a failing job would be polled more often than a healthy one", s.ErrorBackoffMax.String(), s.Interval.String())
	}
	nonNegative(r, "schedule.retainAfterTerminal", s.RetainAfterTerminal, "stop at once")
	nonNegative(r, "schedule.stalledAfter", s.StalledAfter, "off")
	atLeast(r, "schedule.workers", int64(s.Workers), 1)
}

func validateHTTP(h *HTTP, r *report) {
	if h.Listen == "" {
		return // off
	}
	host, ok := checkListen(r, "http.listen", h.Listen)
	if ok && !isLoopback(host) && h.Token.IsZero() {
		r.errorf("http.token", "is required because http.listen %q is reachable from other hosts; set token: {env: NAME} or {file: PATH}, or listen on 127.0.0.1", h.Listen)
	}
}

func validateInstances(c *Config, r *report) {
	names := map[string]int{}
	for i := range c.Instances {
		in := &c.Instances[i]
		p := fmt.Sprintf("instances[%d]", i)
		if err := bridge.ValidateName("instance", in.Name); err != nil {
			r.errorf(p+".name", "%v", err)
		} else if j, dup := names[in.Name]; dup {
			r.errorf(p+".name", "%q is already the name of instances[%d]; names must be unique", in.Name, j)
		} else {
			names[in.Name] = i
		}
		oneOf(r, p+".vendor", in.Vendor, Vendors()...)
		validateVendorURL(r, p+".url", in.URL)
		validateTLS(r, p+".tls", in.TLS)
		if in.Interval < 0 {
			r.errorf(p+".interval", "%q is not allowed; use a duration greater than 0, or leave it out for schedule.interval", in.Interval.String())
		}
		atLeast(r, p+".concurrency", int64(in.Concurrency), 1)
		if !(in.RateLimit >= 0) || math.IsInf(in.RateLimit, 0) {
			r.errorf(p+".rateLimit", "%v is not allowed; use requests per second greater than 0, or 0 for no limit", in.RateLimit)
		}
		positive(r, p+".timeout", in.Timeout)
		atLeast(r, p+".maxBodyBytes", in.MaxBodyBytes, 1)

		a := in.Auth
		switch {
		case a.Username != "" && a.Password.IsZero():
			r.errorf(p+".auth.password", "is required with auth.username; write password: {env: NAME} or {file: PATH}")
		case a.Username == "" && !a.Password.IsZero():
			r.errorf(p+".auth.username", "is required with auth.password")
		}
		switch {
		case a.AccessKey != "" && a.SecretKey.IsZero():
			r.errorf(p+".auth.secretKey", "is required with auth.accessKey; write secretKey: {env: NAME} or {file: PATH}")
		case a.AccessKey == "" && !a.SecretKey.IsZero():
			r.errorf(p+".auth.accessKey", "is required with auth.secretKey")
		}

		seen := map[string]int{}
		for j, id := range in.Jobs {
			jp := fmt.Sprintf("%s.jobs[%d]", p, j)
			if err := bridge.ValidateJobID(id); err != nil {
				r.errorf(jp, "%v", err)
				continue
			}
			if k, dup := seen[id]; dup {
				r.warnf(jp, "job %q repeats jobs[%d]; it is watched once", id, k)
				continue
			}
			seen[id] = j
		}
		for k := range in.Labels {
			if strings.TrimSpace(k) == "" {
				r.errorf(p+".labels", "has an empty key; give every label a name")
			}
		}
		if len(in.Jobs) == 0 && !in.Discover && !c.WatchAPI.Enabled {
			r.warnf(p, "watches nothing: it has no jobs, discover is false and watchAPI is disabled, so no job can be added")
		}
	}
}

func validateVendorURL(r *report, path, raw string) {
	if raw == "" {
		r.errorf(path, "is required; give the vendor API's base URL, such as \"https://host:8443\"")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		r.errorf(path, "%q is not an http(s) URL with a host; use one such as \"https://host:8443/path\"", redactURL(raw))
		return
	}
	if u.User != nil {
		r.errorf(path, "%q carries credentials; remove them and use auth.username with auth.password: {env: NAME}", redactURL(raw))
	}
	if u.Scheme == "http" {
		r.warnf(path, "%q uses plain http://: credentials and job data cross the network unencrypted; use https://", redactURL(raw))
	}
}

// redactURL hides the user information of a URL, which may hold a password
// or a NATS token; it works on strings url.Parse refuses too.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			u.User = url.User("redacted")
		}
		return u.String()
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		start := strings.Index(raw, "://")
		if start < 0 || start > i {
			start = -3
		}
		return raw[:start+3] + "redacted" + raw[i:]
	}
	return raw
}

// validateSecrets checks every SecretRef in c, found by walking the type so
// that a secret field added later is checked too, and resolves it so that a
// missing variable or file stops start-up.
func validateSecrets(c *Config, env func(string) (string, bool), r *report) {
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(path string, s *SecretRef) {
		if s.IsZero() {
			return
		}
		if s.Value != "" && len(s.sources()) == 1 {
			r.warnf(path, "holds the secret inline; move it to an environment variable ({env: NAME}) or a file ({file: /run/secrets/name}) so the configuration can be shared and versioned")
		}
		_, warns, err := s.ResolveWithWarnings(env)
		if err != nil {
			r.errorf(path, "%v", err)
			return
		}
		for _, w := range warns {
			r.warnf(path, "%s", w)
		}
	})
}

func walkSecrets(v reflect.Value, path string, visit func(string, *SecretRef)) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[SecretRef]() {
			visit(path, v.Addr().Interface().(*SecretRef))
			return
		}
		for _, f := range fieldsOf(v.Type()) {
			walkSecrets(v.Field(f.index), joinPath(path, f.key), visit)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), visit)
		}
	}
}

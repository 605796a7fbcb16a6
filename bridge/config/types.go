package config

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of one jobbridge process.
type Config struct {
	// DataDir holds local state, the embedded NATS store among it.
	DataDir string `yaml:"dataDir"`
	// Log sets the level and format of the process log.
	Log Log `yaml:"log"`
	// NATS says which NATS to publish on: the user's, or an embedded server.
	NATS NATS `yaml:"nats"`
	// Stream describes the JetStream stream and KV buckets jobbridge uses.
	Stream Stream `yaml:"stream"`
	// Publish tunes how events are sent to JetStream.
	Publish Publish `yaml:"publish"`
	// Schedule tunes how often jobs are polled.
	Schedule Schedule `yaml:"schedule"`
	// HTTP is the metrics, health and watch endpoint.
	HTTP HTTP `yaml:"http"`
	// WatchAPI is the NATS request/reply service that adds and removes watches.
	WatchAPI WatchAPI `yaml:"watchAPI"`
	// Cluster lets several replicas share the watched jobs through leases
	// in a JetStream KV bucket.
	Cluster Cluster `yaml:"cluster"`
	// Instances are the vendor systems to poll.
	Instances []Instance `yaml:"instances"`
}

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json, console (human-readable) or auto: console on a
	// terminal, json otherwise.
	Format string `yaml:"format"`
}

// NATS says where events go. With URL empty jobbridge runs an embedded
// nats-server with JetStream; the connection settings (user, secrets, files,
// TLS) then have no server to apply to and are rejected.
type NATS struct {
	// URL is the user's NATS server, several separated by commas; empty
	// starts the embedded server.
	URL string `yaml:"url"`
	// Embedded configures the in-process server used when URL is empty.
	Embedded Embedded `yaml:"embedded"`
	// User and Password authenticate with user and password.
	User     string    `yaml:"user"`
	Password SecretRef `yaml:"password"`
	// Token authenticates with a token.
	Token SecretRef `yaml:"token"`
	// CredsFile is a JWT credentials file (NATS decentralized auth).
	CredsFile string `yaml:"credsFile"`
	// NKeyFile is an NKey seed file.
	NKeyFile string `yaml:"nkeyFile"`
	// TLS configures the client side of TLS to the server.
	TLS TLS `yaml:"tls"`
	// Name is the connection name the server shows in its monitoring.
	Name string `yaml:"name"`
}

// Embedded configures the in-process NATS server.
type Embedded struct {
	// Listen is the client address; port 0 picks a free port, and the log
	// says which.
	Listen string `yaml:"listen"`
	// StoreDir is the JetStream store; empty means <dataDir>/nats.
	StoreDir string `yaml:"storeDir"`
}

// TLS configures the client side of a TLS connection. Files are PEM.
type TLS struct {
	// CAFile holds the certificates that may sign the server's certificate;
	// empty trusts the system pool.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate and its key; both or
	// neither.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// InsecureSkipVerify accepts any server certificate. Dangerous: Load
	// warns whenever it is set.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

// Stream describes the JetStream stream that holds the events and the KV
// buckets that hold durable state.
type Stream struct {
	// Name is the stream's name.
	Name string `yaml:"name"`
	// SubjectPrefix is the first token(s) of every event subject; the stream
	// covers <subjectPrefix>.>.
	SubjectPrefix string `yaml:"subjectPrefix"`
	// Replicas is the stream's replica count (1 to 5; 1 with the embedded
	// server).
	Replicas int `yaml:"replicas"`
	// MaxAge drops events older than this; 0 keeps them forever.
	MaxAge Duration `yaml:"maxAge"`
	// DuplicateWindow is how long JetStream remembers event ids to drop a
	// re-published event.
	DuplicateWindow Duration `yaml:"duplicateWindow"`
	// Storage is file or memory.
	Storage string `yaml:"storage"`
	// Manage creates or updates the stream and buckets at start-up; false
	// leaves them to the NATS operator and only checks they exist.
	Manage bool `yaml:"manage"`
	// StateBucket is the KV bucket of last state and sequence per job.
	StateBucket string `yaml:"stateBucket"`
	// WatchBucket is the KV bucket of the watch registry.
	WatchBucket string `yaml:"watchBucket"`
}

// Publish tunes publishing to JetStream.
type Publish struct {
	// Mode is structured (the CloudEvents 1.0.2 NATS binding) or binary
	// (ce- headers, from the binding's unreleased draft).
	Mode string `yaml:"mode"`
	// MaxInFlight bounds publishes awaiting their acknowledgement.
	MaxInFlight int `yaml:"maxInFlight"`
	// MaxPending bounds events queued for publishing, in flight included.
	MaxPending int `yaml:"maxPending"`
	// AckTimeout is how long to wait for JetStream's acknowledgement.
	AckTimeout Duration `yaml:"ackTimeout"`
	// RawPayloadCap is the most bytes of the vendor payload an event carries;
	// 0 leaves the payload out.
	RawPayloadCap int `yaml:"rawPayloadCap"`
	// FlushInterval is how often the tracker snapshot is written to KV.
	FlushInterval Duration `yaml:"flushInterval"`
}

// Schedule tunes polling. A job is polled every Interval; right after a
// change every FastInterval for FastFor; after IdleAfter without a change
// every IdleInterval.
type Schedule struct {
	// Interval is the normal time between two polls of a job.
	Interval Duration `yaml:"interval"`
	// FastInterval is used right after a change.
	FastInterval Duration `yaml:"fastInterval"`
	// FastFor is how long FastInterval lasts after a change.
	FastFor Duration `yaml:"fastFor"`
	// IdleAfter is how long without a change before a job counts as idle; 0
	// never.
	IdleAfter Duration `yaml:"idleAfter"`
	// IdleInterval is used for idle jobs.
	IdleInterval Duration `yaml:"idleInterval"`
	// Jitter spreads polls by up to this fraction of the interval (0 to 0.5),
	// so jobs added together are not polled together forever.
	Jitter float64 `yaml:"jitter"`
	// ErrorBackoffMax caps the back-off after failed polls.
	ErrorBackoffMax Duration `yaml:"errorBackoffMax"`
	// RetainAfterTerminal keeps a finished job's watch (not polled any more)
	// this long before removing it, so a status view or a re-add still finds it.
	RetainAfterTerminal Duration `yaml:"retainAfterTerminal"`
	// StalledAfter emits a stalled event when a running job has not changed
	// for this long; 0 turns it off.
	StalledAfter Duration `yaml:"stalledAfter"`
	// Workers bounds polls in flight over all instances.
	Workers int `yaml:"workers"`
}

// HTTP configures the HTTP endpoint (metrics, health, watch API).
type HTTP struct {
	// Listen is host:port; empty turns the endpoint off.
	Listen string `yaml:"listen"`
	// Token is the bearer token clients must send; required when Listen is
	// not a loopback address.
	Token SecretRef `yaml:"token"`
	// Pprof serves Go's profiler under /debug/pprof/ (behind the token when
	// one is set). Off by default: profiles reveal internals.
	Pprof bool `yaml:"pprof"`
}

// WatchAPI configures the watch service on NATS (request/reply).
type WatchAPI struct {
	// Enabled serves the watch API.
	Enabled bool `yaml:"enabled"`
	// ServiceName is the NATS micro service name.
	ServiceName string `yaml:"serviceName"`
}

// Cluster configures scale-out: several `jobbridge run` replicas on one
// NATS share the watch space, split in Shards, through leases in
// LeaseBucket. Every replica of a deployment must use the same Shards,
// LeaseBucket, stream and buckets.
type Cluster struct {
	// Enabled turns leasing on. Off, one process polls every watched job.
	Enabled bool `yaml:"enabled"`
	// ReplicaID names this replica in leases and `jobbridge status`; empty
	// means host name plus a random suffix. Unique per running replica.
	ReplicaID string `yaml:"replicaID"`
	// Shards is how many parts the watch space is split into; fixed for a
	// deployment (recorded in the lease bucket; a replica with another
	// value refuses to start).
	Shards int `yaml:"shards"`
	// LeaseBucket is the KV bucket of replicas and leases.
	LeaseBucket string `yaml:"leaseBucket"`
	// LeaseTTL is how long a lease lives without renewal: a dead replica's
	// shards are taken over after about this long. Leases are renewed every
	// LeaseTTL/4; a replica that cannot renew stops publishing after 3/4 of it.
	LeaseTTL Duration `yaml:"leaseTTL"`
}

// Instance is one vendor system to poll.
type Instance struct {
	// Name identifies the instance in subjects, events and logs; unique.
	Name string `yaml:"name"`
	// Vendor is one of Vendors().
	Vendor string `yaml:"vendor"`
	// URL is the base URL of the vendor API (https://host:port/...).
	URL string `yaml:"url"`
	// Auth holds the credentials; which fields apply depends on the vendor.
	Auth Auth `yaml:"auth"`
	// TLS configures TLS to the vendor.
	TLS TLS `yaml:"tls"`
	// Interval overrides schedule.interval for this instance; 0 (or left out)
	// uses schedule.interval, and the loaded Config holds the effective value.
	Interval Duration `yaml:"interval"`
	// Concurrency bounds polls in flight to this instance.
	Concurrency int `yaml:"concurrency"`
	// RateLimit bounds requests per second to this instance; 0 = no limit.
	RateLimit float64 `yaml:"rateLimit"`
	// Timeout bounds one request to the vendor.
	Timeout Duration `yaml:"timeout"`
	// MaxBodyBytes bounds a vendor response body.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// Jobs are job ids to watch from start-up.
	Jobs []string `yaml:"jobs"`
	// Discover watches every job the vendor lists, where the vendor can list.
	Discover bool `yaml:"discover"`
	// Labels are copied into every event of this instance.
	Labels map[string]string `yaml:"labels"`
	// Options are vendor-specific settings, kept raw here and checked by the
	// vendor's factory.
	Options map[string]any `yaml:"options"`
}

// Auth holds vendor credentials. Which fields a vendor uses is the vendor
// package's business; this package checks only pairs that make no sense
// alone and that every secret resolves.
type Auth struct {
	// Username and Password log on (TSO, ArcGIS, Huawei IAM, HMC).
	Username string    `yaml:"username"`
	Password SecretRef `yaml:"password"`
	// Token is a ready-made credential used instead of a log-on (a
	// long-lived ArcGIS token, say).
	Token SecretRef `yaml:"token"`
	// AccessKey and SecretKey are an access key pair (Helix access keys,
	// Huawei AK/SK).
	AccessKey string    `yaml:"accessKey"`
	SecretKey SecretRef `yaml:"secretKey"`
	// Domain is the account or domain name (Huawei IAM domain).
	Domain string `yaml:"domain"`
	// Project is the project name or id (Huawei IAM project scope).
	Project string `yaml:"project"`
}

// SecretRef says where a secret is: exactly one of Value (inline, which
// Load warns about), Env (an environment variable) or File (a file whose
// trailing line breaks are dropped). All empty means no secret is configured.
type SecretRef struct {
	// Value is the secret itself, inline in the file.
	Value string `yaml:"value"`
	// Env names the environment variable that holds the secret.
	Env string `yaml:"env"`
	// File names the file that holds the secret.
	File string `yaml:"file"`
}

// IsZero reports whether no secret is configured.
func (s SecretRef) IsZero() bool { return s.Value == "" && s.Env == "" && s.File == "" }

// MarshalYAML keeps an inline value out of any YAML written from a Config:
// the value becomes a redaction marker, the env and file names stay, and
// fields left empty are omitted.
func (s SecretRef) MarshalYAML() (any, error) {
	type ref struct {
		Value string `yaml:"value,omitempty"`
		Env   string `yaml:"env,omitempty"`
		File  string `yaml:"file,omitempty"`
	}
	r := ref{Env: s.Env, File: s.File}
	if s.Value != "" {
		r.Value = redactedMarker
	}
	return r, nil
}

// Duration is a time.Duration written in YAML and in the environment as a Go
// duration string ("10s", "1m30s"). A bare number is refused: "10" could mean
// seconds or nanoseconds.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration without zero trailing units: "2m",
// "168h", "1h30m".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalYAML writes d as its String form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"10s\"", n.Line)
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as its String form (JSON, text encoders).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a Go duration such as \"10s\", \"1m30s\" or \"168h\"", s)
	}
	return v, nil
}

// Vendors lists the vendor names an instance may have.
func Vendors() []string { return []string{"tso", "helix", "arcgis", "huawei", "hmc"} }

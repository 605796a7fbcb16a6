package config

import (
	"path/filepath"
	"time"
)

// Default returns the configuration used when no file is given (jobbridge
// demo): an embedded NATS server, no instances, every other setting at its
// default. It is valid as returned.
func Default() *Config {
	c := defaults()
	c.finish()
	return c
}

// DefaultInstance returns an Instance with the per-instance defaults set, for
// code that adds instances to a Config (the demo adds its simulators). Name,
// Vendor and URL are left for the caller; Interval 0 means schedule.interval.
func DefaultInstance() Instance {
	var in Instance
	in.setDefaults()
	return in
}

// defaults is the configuration before the file is read over it. Values
// derived from other keys (the embedded store directory, instance intervals)
// are left empty here and filled by finish, so that they follow a dataDir or
// schedule.interval set in the file or the environment.
func defaults() *Config {
	return &Config{
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "auto"},
		NATS: NATS{
			Embedded: Embedded{Listen: "127.0.0.1:0"},
			Name:     "jobbridge",
		},
		Stream: Stream{
			Name:            "JOBS",
			SubjectPrefix:   "jobs",
			Replicas:        1,
			MaxAge:          Duration(168 * time.Hour),
			DuplicateWindow: Duration(2 * time.Minute),
			Storage:         "file",
			Manage:          true,
			StateBucket:     "JOBBRIDGE_STATE",
			WatchBucket:     "JOBBRIDGE_WATCHES",
		},
		Publish: Publish{
			Mode:          "structured",
			MaxInFlight:   1024,
			MaxPending:    10000,
			AckTimeout:    Duration(5 * time.Second),
			RawPayloadCap: 16384,
			FlushInterval: Duration(time.Second),
		},
		Schedule: Schedule{
			Interval:            Duration(10 * time.Second),
			FastInterval:        Duration(2 * time.Second),
			FastFor:             Duration(time.Minute),
			IdleAfter:           Duration(10 * time.Minute),
			IdleInterval:        Duration(60 * time.Second),
			Jitter:              0.1,
			ErrorBackoffMax:     Duration(5 * time.Minute),
			RetainAfterTerminal: Duration(10 * time.Minute),
			Workers:             64,
		},
		HTTP:     HTTP{Listen: "127.0.0.1:9090"},
		WatchAPI: WatchAPI{Enabled: true, ServiceName: "jobbridge-watch"},
		Cluster:  Cluster{Shards: 64, LeaseBucket: "JOBBRIDGE_LEASES", LeaseTTL: Duration(15 * time.Second)},
	}
}

// setDefaults resets in to the per-instance defaults. The decoder calls it for
// each new list element, so keys an instance leaves out get these values while
// keys it sets (even to zero) are kept and validated.
func (in *Instance) setDefaults() {
	*in = Instance{
		Concurrency:  5,
		Timeout:      Duration(30 * time.Second),
		MaxBodyBytes: 4 << 20,
	}
}

// finish fills the values derived from other keys. It runs after the file and
// the environment are applied, so the derived values follow both.
func (c *Config) finish() {
	if c.NATS.Embedded.StoreDir == "" && c.DataDir != "" {
		c.NATS.Embedded.StoreDir = filepath.Join(c.DataDir, "nats")
	}
	for i := range c.Instances {
		if c.Instances[i].Interval == 0 {
			c.Instances[i].Interval = c.Schedule.Interval
		}
	}
}

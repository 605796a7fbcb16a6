package hmcsim

import (
	"errors"
	"fmt"
	"time"
)

// Endpoint names a WS API operation, for targeting faults.
type Endpoint string

// The simulated operations. EndpointAny matches every request, unknown
// URIs included.
const (
	EndpointAny            Endpoint = ""
	EndpointVersion        Endpoint = "version"         // GET /api/version
	EndpointLogon          Endpoint = "logon"           // POST /api/sessions
	EndpointLogoff         Endpoint = "logoff"          // DELETE /api/sessions/this-session
	EndpointTopics         Endpoint = "topics"          // GET /api/sessions/operations/get-notification-topics
	EndpointQueryJob       Endpoint = "query-job"       // GET /api/jobs/{job-id}
	EndpointDeleteJob      Endpoint = "delete-job"      // DELETE /api/jobs/{job-id}
	EndpointStartPartition Endpoint = "start-partition" // POST /api/partitions/{partition-id}/operations/start
	EndpointCreateStream   Endpoint = "create-stream"   // POST SSECreatePath (assumed URI)
	EndpointOpenStream     Endpoint = "open-stream"     // GET SSEOpenPath
)

func (e Endpoint) valid() bool {
	switch e {
	case EndpointAny, EndpointVersion, EndpointLogon, EndpointLogoff, EndpointTopics,
		EndpointQueryJob, EndpointDeleteJob, EndpointStartPartition, EndpointCreateStream, EndpointOpenStream:
		return true
	}
	return false
}

// FaultKind says what a fault does to the requests it hits.
type FaultKind string

// Fault kinds.
const (
	// FaultStatus answers with Fault.Status (default 500) and the HMC's
	// standard error body.
	FaultStatus FaultKind = "status"
	// FaultHTML answers with Fault.Status (default 200) and an HTML page,
	// as a proxy or load balancer in front of the HMC might.
	FaultHTML FaultKind = "html"
	// FaultDelay holds the answer for Fault.Delay (real time), then
	// answers normally.
	FaultDelay FaultKind = "delay"
	// FaultMalformed answers 200 with truncated JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultExpireSessions invalidates, when it fires, every session opened
	// until then: their next use gets 403 reason 5. It hits no request.
	FaultExpireSessions FaultKind = "expire_sessions"
)

// Fault is an injected misbehaviour.
type Fault struct {
	Kind FaultKind `yaml:"kind"`
	// Count is how many requests it hits; 0 means 1.
	Count int `yaml:"count"`
	// Status is the HTTP status of a FaultStatus or FaultHTML.
	Status int `yaml:"status"`
	// Delay is the hold of a FaultDelay.
	Delay time.Duration `yaml:"delay"`
	// Endpoint limits the fault to one operation; empty means any.
	Endpoint Endpoint `yaml:"endpoint"`
	// At arms the fault this long after the server started, by its Clock;
	// zero arms it at once.
	At time.Duration `yaml:"at"`
}

func checkFault(f Fault) error {
	switch f.Kind {
	case FaultStatus, FaultHTML:
		if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
			return fmt.Errorf("fault status %d is not an HTTP status", f.Status)
		}
	case FaultDelay:
		if f.Delay <= 0 {
			return errors.New("a delay fault needs a positive delay")
		}
	case FaultMalformed, FaultExpireSessions:
	default:
		return fmt.Errorf("unknown fault kind %q: want status, html, delay, malformed or expire_sessions", f.Kind)
	}
	if !f.Endpoint.valid() {
		return fmt.Errorf("unknown endpoint %q: want version, logon, logoff, topics, query-job, delete-job, start-partition, create-stream, open-stream or nothing for any", f.Endpoint)
	}
	if f.Count < 0 || f.At < 0 {
		return errors.New("fault count and at must not be negative")
	}
	return nil
}

type pendingFault struct {
	Fault
	at   time.Time
	left int
}

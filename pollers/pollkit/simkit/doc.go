// Package simkit owns the plumbing every vendor simulator shares — never
// vendor behaviour. A simulator package (tsosim, helixsim, ...) keeps what
// its vendor documents: paths, payloads, error bodies, credentials and the
// meaning of its own fault kinds. What it takes from here is what would be
// the same line for line in every one of them:
//
//   - Host: the httptest-style lifecycle. Listen on an address (127.0.0.1:0
//     for NewServer, any for a standalone run) over http or https with
//     httptest's certificate, Client and Certificate for the first
//     listener, Close that cuts delayed answers short, stops the listeners
//     and waits for the goroutines started with Go. Hold is the delay of a
//     delay fault: real time, since it models the network.
//   - Clock and WallClock. pollkit.ManualClock is the clock a test moves.
//   - Fault, FaultKind, Endpoint, Vocabulary (the checks every simulator
//     makes of an injected fault) and FaultQueue (checking against the
//     vocabulary, arming now or At after the start by the clock, Count
//     requests, Endpoint targeting, and instant kinds such as a token
//     expiry that hit no request). Armable lets a vendor whose faults carry
//     more (ArcGIS's error code) keep its own type.
//   - Timeline: a scripted entity's steps on the clock, what it shows at a
//     time and its changes up to now, the ground truth behind every
//     simulator's History.
//   - LoadScenario: strict YAML (or JSON) scenarios, checked as a server
//     would check them.
//   - LogRequests, EncodeJSON, WriteJSON, WriteBody, ReadBody and random
//     tokens.
//
// Subpackage simtest holds what the poller tests that drive a simulator
// share.
package simkit

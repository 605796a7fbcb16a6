// Package bridge owns what every vendor shares: the canonical job model, the
// durable tracker of last-known state per job, transition detection, CloudEvent
// building, publishing on NATS JetStream, poll scheduling and the watch registry.
//
// Vendor knowledge lives elsewhere: a poller (package pollers/<vendor>) turns one
// vendor's status payload into an Observation and never decides whether anything
// changed; a notifier (package notifiers/...) turns a pushed message into a Hint.
package bridge

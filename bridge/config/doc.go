// Package config owns the configuration file format, env overrides, secret
// resolution and validation.
//
// A configuration is one YAML file with lowerCamel keys, read strictly: an
// unknown key is an error with a "did you mean" hint. Keys left out keep the
// defaults of Default; durations are Go duration strings ("10s", "168h").
// Every scalar outside instances can be overridden by an environment variable
// JOBBRIDGE_<PATH>, the key path upper-cased with '_' between keys
// (JOBBRIDGE_NATS_URL, JOBBRIDGE_PUBLISH_MAXINFLIGHT), and each instance's url,
// interval and concurrency by JOBBRIDGE_INSTANCE_<NAME>_<FIELD>; EnvKeys lists
// them all.
//
// Secrets are never written inline in the usual case but referenced:
//
//	password: {env: TSO_PASSWORD}
//	password: {file: /run/secrets/tso}
//
// They are resolved during validation, so a missing secret stops start-up
// instead of failing the first poll, and no message ever holds a secret's
// value.
//
// Validation reports every problem at once. Each message names the file, the
// line when known, the key path (instances[1].auth.password), the environment
// variable when the value came from one, the bad value (never a secret) and
// what is allowed.
package config

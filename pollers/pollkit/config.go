package pollkit

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

// Deps are what a vendor factory gets besides its instance's configuration.
type Deps struct {
	// Env looks up environment variables (secrets); nil means none.
	Env    func(string) (string, bool)
	Logger zerolog.Logger
	// WrapTransport is copied into every vendor client (see ClientOptions).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Factory turns one configured instance into a bridge.Instance. Each vendor
// package exports one as FromConfig.
type Factory func(ctx context.Context, inst config.Instance, deps Deps) (bridge.Instance, error)

// ClientOptionsFor maps the instance settings every vendor shares (URL, TLS,
// timeout, body cap, concurrency, rate limit) onto ClientOptions, so no
// vendor factory repeats it.
func ClientOptionsFor(inst config.Instance, log zerolog.Logger) ClientOptions {
	return ClientOptionsWith(inst, Deps{Logger: log})
}

// ClientOptionsWith is ClientOptionsFor with every factory dependency
// applied (the transport hook among them).
func ClientOptionsWith(inst config.Instance, deps Deps) ClientOptions {
	log := deps.Logger
	return ClientOptions{
		BaseURL:            inst.URL,
		CAFile:             inst.TLS.CAFile,
		InsecureSkipVerify: inst.TLS.InsecureSkipVerify,
		CertFile:           inst.TLS.CertFile,
		KeyFile:            inst.TLS.KeyFile,
		Timeout:            inst.Timeout.Std(),
		MaxBodyBytes:       inst.MaxBodyBytes,
		MaxConcurrent:      inst.Concurrency,
		RateLimit:          inst.RateLimit,
		UserAgent:          "jobbridge",
		WrapTransport:      deps.WrapTransport,
		Logger:             log.With().Str("vendor", inst.Vendor).Str("instance", inst.Name).Logger(),
	}
}

// InstanceFor fills the bridge.Instance fields every vendor shares.
func InstanceFor(inst config.Instance, p bridge.Poller) bridge.Instance {
	return bridge.Instance{
		Vendor: inst.Vendor, Name: inst.Name, Poller: p,
		Interval: inst.Interval.Std(), Concurrency: inst.Concurrency, Labels: inst.Labels,
	}
}

// DecodeOptions decodes an instance's vendor-specific options strictly into
// the vendor's own struct (yaml tags): an unknown key is an error that lists
// the keys the vendor knows.
func DecodeOptions(inst config.Instance, into any) error {
	if len(inst.Options) == 0 {
		return nil
	}
	raw, err := yaml.Marshal(inst.Options)
	if err != nil {
		return fmt.Errorf("instance %s: options: %w", inst.Name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("instance %s (%s): options: %s; known options: %s", inst.Name, inst.Vendor,
			strings.TrimPrefix(err.Error(), "yaml: "), strings.Join(yamlKeys(into), ", "))
	}
	return nil
}

func yamlKeys(v any) []string {
	var keys []string
	m := map[string]any{}
	b, _ := yaml.Marshal(v)
	_ = yaml.Unmarshal(b, &m)
	for k := range m {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return []string{"(none)"}
	}
	slicesSort(keys)
	return keys
}

// ResolveSecret resolves a secret reference with the factory's environment,
// naming the instance and key in the error.
func ResolveSecret(inst config.Instance, key string, ref config.SecretRef, deps Deps) (bridge.Secret, error) {
	s, err := ref.Resolve(deps.Env)
	if err != nil {
		return bridge.Secret{}, fmt.Errorf("instance %s: auth.%s: %w", inst.Name, key, err)
	}
	return s, nil
}

package tso

import (
	"context"
	"fmt"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ConfigOptions are the TSO-specific keys of an instance's options.
type ConfigOptions struct {
	// TimeZone is the TSO server's JVM zone (IANA name), used to read zone
	// abbreviations in startTime, e.g. America/Chicago.
	TimeZone string `yaml:"timeZone"`
}

// FromConfig builds a TSO instance from configuration.
func FromConfig(_ context.Context, inst config.Instance, deps pollkit.Deps) (bridge.Instance, error) {
	var co ConfigOptions
	if err := pollkit.DecodeOptions(inst, &co); err != nil {
		return bridge.Instance{}, err
	}
	pw, err := pollkit.ResolveSecret(inst, "password", inst.Auth.Password, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	var zone *time.Location
	if co.TimeZone != "" {
		if zone, err = time.LoadLocation(co.TimeZone); err != nil {
			return bridge.Instance{}, fmt.Errorf("instance %s: options.timeZone %q: %w (use an IANA name such as America/Chicago)", inst.Name, co.TimeZone, err)
		}
	}
	p, err := New(Options{
		Instance: inst.Name, BaseURL: inst.URL, Username: inst.Auth.Username, Password: pw,
		HTTP: pollkit.ClientOptionsWith(inst, deps), Logger: deps.Logger, Zone: zone,
	})
	if err != nil {
		return bridge.Instance{}, err
	}
	return pollkit.InstanceFor(inst, p), nil
}

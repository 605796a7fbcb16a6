package arcgis

import (
	"context"
	"fmt"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ConfigOptions are the ArcGIS-specific keys of an instance's options.
type ConfigOptions struct {
	// Flavor is mission, enterprise or geoprocessing (required).
	Flavor string `yaml:"flavor"`
	// TokenURL is the generateToken endpoint (required with auth.username).
	TokenURL string `yaml:"tokenURL"`
	// Referer binds tokens to this referer and is sent on every request;
	// empty binds them to the poller's IP (client=requestip).
	Referer string `yaml:"referer"`
	// TokenExpiration is the token lifetime asked for (default 60m).
	TokenExpiration config.Duration `yaml:"tokenExpiration"`
	// JobsPath is the job collection below url (default /jobs, or
	// /system/jobs for enterprise).
	JobsPath string `yaml:"jobsPath"`
	// DiscoverInterval is how often the job list is read with discover: true
	// (default 1m).
	DiscoverInterval config.Duration `yaml:"discoverInterval"`
}

// FromConfig builds an ArcGIS instance from configuration.
func FromConfig(_ context.Context, inst config.Instance, deps pollkit.Deps) (bridge.Instance, error) {
	var co ConfigOptions
	if err := pollkit.DecodeOptions(inst, &co); err != nil {
		return bridge.Instance{}, err
	}
	flavor, err := ParseFlavor(co.Flavor)
	if err != nil {
		return bridge.Instance{}, fmt.Errorf("instance %s: options.flavor: %w", inst.Name, err)
	}
	if inst.Discover && !flavor.CanDiscover() {
		return bridge.Instance{}, fmt.Errorf("instance %s: discover is true but %w", inst.Name, errNoJobList)
	}
	if co.DiscoverInterval < 0 || co.TokenExpiration < 0 {
		return bridge.Instance{}, fmt.Errorf("instance %s: options.discoverInterval and options.tokenExpiration must not be negative", inst.Name)
	}
	a := inst.Auth
	if a.AccessKey != "" || !a.SecretKey.IsZero() || a.Domain != "" || a.Project != "" {
		return bridge.Instance{}, fmt.Errorf("instance %s: ArcGIS uses auth.username with auth.password, or auth.token; remove auth.accessKey, secretKey, domain and project", inst.Name)
	}
	pw, err := pollkit.ResolveSecret(inst, "password", a.Password, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	tok, err := pollkit.ResolveSecret(inst, "token", a.Token, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	p, err := New(Options{
		Instance: inst.Name, Flavor: flavor, BaseURL: inst.URL, JobsPath: co.JobsPath,
		Username: a.Username, Password: pw, TokenURL: co.TokenURL, Referer: co.Referer,
		TokenExpiration: co.TokenExpiration.Std(), Token: tok,
		HTTP: pollkit.ClientOptionsWith(inst, deps), Logger: deps.Logger,
	})
	if err != nil {
		return bridge.Instance{}, err
	}
	bi := pollkit.InstanceFor(inst, p)
	bi.Discover = inst.Discover
	bi.DiscoverInterval = co.DiscoverInterval.Std()
	return bi, nil
}

package helix

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ConfigOptions are the Helix-specific keys of an instance's options.
type ConfigOptions struct {
	// LoginURL is the Helix Portal root when it differs from the instance
	// url (the CO API), e.g. https://acme.onbmc.com.
	LoginURL string `yaml:"loginURL"`
	// TenantID is sent with the access key login.
	TenantID string `yaml:"tenantID"`
	// NameFilter limits discovery to ETLs whose name matches this regular
	// expression (RE2 syntax, unanchored: plain text matches as a substring).
	NameFilter string `yaml:"nameFilter"`
	// DiscoverInterval is how often the ETL list is read when discover is
	// on; default 1m.
	DiscoverInterval config.Duration `yaml:"discoverInterval"`
	// TokenLifetime is the JWT lifetime assumed when the JWT's exp claim
	// cannot be read; default 15m.
	TokenLifetime config.Duration `yaml:"tokenLifetime"`
}

// FromConfig builds a Helix CO instance from configuration: auth.accessKey
// with auth.secretKey for Helix SaaS, or auth.token (an API key) for
// on-prem TrueSight CO. The instance is Recurring (ETLs run again) and
// discovers ETLs when the instance says discover: true.
func FromConfig(_ context.Context, inst config.Instance, deps pollkit.Deps) (bridge.Instance, error) {
	var co ConfigOptions
	if err := pollkit.DecodeOptions(inst, &co); err != nil {
		return bridge.Instance{}, err
	}
	if inst.Auth.Username != "" || !inst.Auth.Password.IsZero() {
		return bridge.Instance{}, fmt.Errorf("instance %s (helix): auth.username and auth.password are not used: give auth.accessKey with auth.secretKey (a Helix Portal access key), or auth.token (an on-prem TrueSight CO API key)", inst.Name)
	}
	secret, err := pollkit.ResolveSecret(inst, "secretKey", inst.Auth.SecretKey, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	token, err := pollkit.ResolveSecret(inst, "token", inst.Auth.Token, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	var filter *regexp.Regexp
	if co.NameFilter != "" {
		if filter, err = regexp.Compile(co.NameFilter); err != nil {
			return bridge.Instance{}, fmt.Errorf("instance %s: options.nameFilter %q: %w (it is a regular expression: escape metacharacters such as ( [ . with a backslash)", inst.Name, co.NameFilter, err)
		}
		if !inst.Discover {
			deps.Logger.Warn().Str("instance", inst.Name).Msg("options.nameFilter has no effect without discover: true")
		}
	}
	if co.DiscoverInterval < 0 || co.TokenLifetime < 0 {
		return bridge.Instance{}, fmt.Errorf("instance %s: options.discoverInterval and options.tokenLifetime must not be negative", inst.Name)
	}
	if lt := co.TokenLifetime.Std(); lt != 0 && lt < time.Minute {
		return bridge.Instance{}, fmt.Errorf("instance %s: options.tokenLifetime %v is under a minute; the JWT would be renewed on nearly every poll", inst.Name, lt)
	}
	p, err := New(Options{
		Instance: inst.Name, BaseURL: inst.URL, LoginURL: co.LoginURL,
		AccessKey: inst.Auth.AccessKey, SecretKey: secret, TenantID: co.TenantID, APIToken: token,
		TokenLifetime: co.TokenLifetime.Std(), NameFilter: filter,
		HTTP: pollkit.ClientOptionsWith(inst, deps), Logger: deps.Logger,
	})
	if err != nil {
		return bridge.Instance{}, err
	}
	bi := pollkit.InstanceFor(inst, p)
	bi.Recurring = true
	bi.Discover = inst.Discover
	bi.DiscoverInterval = co.DiscoverInterval.Std()
	return bi, nil
}

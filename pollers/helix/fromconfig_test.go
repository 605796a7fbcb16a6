package helix_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

func env(name string) (string, bool) {
	switch name {
	case "HELIX_SECRET":
		return secretKey, true
	case "TSCO_KEY":
		return apiKey, true
	}
	return "", false
}

func TestFromConfigBuildsARecurringDiscoveringInstance(t *testing.T) {
	clk := pollkit.NewManualClock(time.Now())
	sim := helixsim.NewServer(helixsim.Options{Clock: clk, SeparatePortal: true,
		AccessKeys: []helixsim.AccessKey{{ID: accessKey, Secret: secretKey, TenantID: "42"}},
		ETLs:       []helixsim.ETL{{ID: 1, Name: "prod-a"}, {ID: 2, Name: "test-b"}}})
	defer sim.Close()
	inst := config.Instance{
		Name: "co", Vendor: helix.Vendor, URL: sim.URL, Interval: config.Duration(time.Minute), Concurrency: 2,
		Discover: true, Labels: map[string]string{"site": "fra"},
		Auth: config.Auth{AccessKey: accessKey, SecretKey: config.SecretRef{Env: "HELIX_SECRET"}},
		Options: map[string]any{"loginURL": sim.PortalURL, "tenantID": "42", "nameFilter": "^prod-",
			"discoverInterval": "5m", "tokenLifetime": "10m"},
	}
	bi, err := helix.FromConfig(context.Background(), inst, pollkit.Deps{Env: env, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	if bi.Vendor != helix.Vendor || bi.Name != "co" || !bi.Recurring || !bi.Discover || bi.DiscoverInterval != 5*time.Minute ||
		bi.Interval != time.Minute || bi.Concurrency != 2 || bi.Labels["site"] != "fra" {
		t.Fatalf("instance %+v", bi)
	}
	ids, err := bi.Poller.(*helix.Poller).Discover(context.Background())
	if err != nil || !slices.Equal(ids, []string{"1"}) {
		t.Fatalf("Discover through the configured portal, tenant and filter: %v %v", ids, err)
	}
}

func TestFromConfigOnPremToken(t *testing.T) {
	sim := helixsim.NewServer(helixsim.Options{APITokens: []string{apiKey}, ETLs: []helixsim.ETL{{ID: 5, Initial: "WAITING"}}})
	defer sim.Close()
	inst := config.Instance{Name: "tsco", Vendor: helix.Vendor, URL: sim.URL, Auth: config.Auth{Token: config.SecretRef{Env: "TSCO_KEY"}}}
	bi, err := helix.FromConfig(context.Background(), inst, pollkit.Deps{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if bi.Discover {
		t.Fatal("discover must follow the instance setting")
	}
	if obs, err := bi.Poller.Poll(context.Background(), ref(5)); err != nil || obs.Native != "WAITING" {
		t.Fatalf("%+v %v", obs, err)
	}
}

func TestFromConfigRefusesMistakes(t *testing.T) {
	good := func() config.Instance {
		return config.Instance{Name: "co", Vendor: helix.Vendor, URL: "https://co.example.com",
			Auth: config.Auth{AccessKey: accessKey, SecretKey: config.SecretRef{Env: "HELIX_SECRET"}}}
	}
	for name, c := range map[string]struct {
		mut  func(*config.Instance)
		want string
	}{
		"unknown option":  {func(i *config.Instance) { i.Options = map[string]any{"jwtRefresh": "10m"} }, "known options: discoverInterval, loginURL, nameFilter, tenantID, tokenLifetime"},
		"bad regexp":      {func(i *config.Instance) { i.Options = map[string]any{"nameFilter": "prod-(eu"} }, "options.nameFilter"},
		"username":        {func(i *config.Instance) { i.Auth.Username = "ops" }, "auth.accessKey with auth.secretKey"},
		"missing secret":  {func(i *config.Instance) { i.Auth.SecretKey = config.SecretRef{Env: "NOPE"} }, "auth.secretKey"},
		"both":            {func(i *config.Instance) { i.Auth.Token = config.SecretRef{Env: "TSCO_KEY"} }, "not both"},
		"short lifetime":  {func(i *config.Instance) { i.Options = map[string]any{"tokenLifetime": "10s"} }, "tokenLifetime"},
		"bad duration":    {func(i *config.Instance) { i.Options = map[string]any{"discoverInterval": "often"} }, "discoverInterval"},
		"API path in url": {func(i *config.Instance) { i.URL = "https://co.example.com/opt/api/v1/backend" }, "server root"},
	} {
		inst := good()
		c.mut(&inst)
		_, err := helix.FromConfig(context.Background(), inst, pollkit.Deps{Env: env})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestFromConfigWarnsAboutAnIdleNameFilter(t *testing.T) {
	var logs bytes.Buffer
	inst := config.Instance{Name: "co", Vendor: helix.Vendor, URL: "https://co.example.com",
		Auth: config.Auth{Token: config.SecretRef{Env: "TSCO_KEY"}}, Options: map[string]any{"nameFilter": "prod"}}
	if _, err := helix.FromConfig(context.Background(), inst, pollkit.Deps{Env: env, Logger: zerolog.New(&logs)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "nameFilter has no effect without discover") {
		t.Fatalf("log: %s", logs.String())
	}
}

// TestDeployExampleBuilds feeds deploy/config/helix.yaml through the config
// loader and FromConfig, so the example never names an option the factory
// refuses.
func TestDeployExampleBuilds(t *testing.T) {
	const path = "../../deploy/config/helix.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Every secret the example names resolves; the JOBBRIDGE_* overrides stay unset.
	anyEnv := func(name string) (string, bool) { return "placeholder", !strings.HasPrefix(name, "JOBBRIDGE_") }
	c, _, err := config.Parse(path, data, anyEnv)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	n := 0
	for _, inst := range c.Instances {
		if inst.Vendor != helix.Vendor {
			continue
		}
		n++
		bi, err := helix.FromConfig(context.Background(), inst, pollkit.Deps{Env: anyEnv})
		if err != nil {
			t.Fatalf("FromConfig(%s): %v", inst.Name, err)
		}
		if !bi.Recurring || !bi.Discover || bi.DiscoverInterval != 5*time.Minute {
			t.Fatalf("example instance %+v", bi)
		}
	}
	if n == 0 {
		t.Fatal("the example has no helix instance")
	}
}

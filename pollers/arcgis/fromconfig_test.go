package arcgis_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/arcgis/arcgissim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestFromConfigAgainstTheSimulator(t *testing.T) {
	sim, _ := newSim(t, arcgissim.Options{StaticTokens: []string{"static-tok"}})
	sim.MustAddJob(arcgissim.Job{ID: "m", Kind: arcgissim.KindMission})
	sim.MustAddJob(arcgissim.Job{ID: "g", Kind: arcgissim.KindGP})
	deps := pollkit.Deps{Env: env(map[string]string{"PW": password, "TOK": "static-tok"}), Logger: zerolog.Nop()}

	inst := config.Instance{
		Name: "mission", Vendor: arcgis.Vendor, URL: sim.MissionURL(), Interval: config.Duration(5 * time.Second),
		Auth:     config.Auth{Username: user, Password: config.SecretRef{Env: "PW"}},
		Discover: true, Labels: map[string]string{"site": "fra"},
		Options: map[string]any{"flavor": "mission", "tokenURL": sim.PortalTokenURL(), "discoverInterval": "30s", "tokenExpiration": "2h"},
	}
	bi, err := arcgis.FromConfig(context.Background(), inst, deps)
	if err != nil {
		t.Fatal(err)
	}
	if bi.Vendor != arcgis.Vendor || bi.Name != "mission" || !bi.Discover || bi.DiscoverInterval != 30*time.Second ||
		bi.Interval != 5*time.Second || bi.Labels["site"] != "fra" || bi.Recurring {
		t.Fatalf("instance %+v", bi)
	}
	if obs, err := bi.Poller.Poll(context.Background(), bridge.JobRef{Vendor: arcgis.Vendor, Instance: "mission", ID: "m"}); err != nil || obs.State != bridge.StatePending {
		t.Fatalf("poll: %+v %v", obs, err)
	}
	if ids, err := bi.Poller.(bridge.Discoverer).Discover(context.Background()); err != nil || len(ids) != 1 {
		t.Fatalf("discover: %v %v", ids, err)
	}

	gp := config.Instance{Name: "gp", Vendor: arcgis.Vendor, URL: sim.GPTaskURL(),
		Auth: config.Auth{Token: config.SecretRef{Env: "TOK"}}, Options: map[string]any{"flavor": "geoprocessing"}}
	bi, err = arcgis.FromConfig(context.Background(), gp, deps)
	if err != nil {
		t.Fatal(err)
	}
	if obs, err := bi.Poller.Poll(context.Background(), bridge.JobRef{Vendor: arcgis.Vendor, Instance: "gp", ID: "g"}); err != nil || obs.State != bridge.StatePending {
		t.Fatalf("gp poll: %+v %v", obs, err)
	}
	if st := sim.Stats(); st.TokensIssued != 1 || st.QueryTokens != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFromConfigRejects(t *testing.T) {
	ok := config.Instance{Name: "gis", Vendor: arcgis.Vendor, URL: "https://gis.example.com/mission/rest",
		Auth:    config.Auth{Username: "u", Password: config.SecretRef{Env: "PW"}},
		Options: map[string]any{"flavor": "mission", "tokenURL": "https://gis.example.com/portal/sharing/rest/generateToken"}}
	deps := pollkit.Deps{Env: env(map[string]string{"PW": "p"})}
	if _, err := arcgis.FromConfig(context.Background(), ok, deps); err != nil {
		t.Fatalf("valid: %v", err)
	}
	cases := map[string]struct {
		mut  func(*config.Instance)
		want string
	}{
		"no flavor":         {func(i *config.Instance) { delete(i.Options, "flavor") }, "options.flavor"},
		"bad flavor":        {func(i *config.Instance) { i.Options["flavor"] = "online" }, "mission, enterprise or geoprocessing"},
		"unknown option":    {func(i *config.Instance) { i.Options["tokenUrl"] = "x" }, "known options"},
		"gp discover":       {func(i *config.Instance) { i.Options["flavor"] = "geoprocessing"; i.Discover = true }, "do not list their jobs"},
		"access key":        {func(i *config.Instance) { i.Auth.AccessKey = "ak" }, "remove auth.accessKey"},
		"missing secret":    {func(i *config.Instance) { i.Auth.Password = config.SecretRef{Env: "NOPE"} }, "auth.password"},
		"no token url":      {func(i *config.Instance) { delete(i.Options, "tokenURL") }, "generateToken"},
		"negative interval": {func(i *config.Instance) { i.Options["discoverInterval"] = "-1m" }, "negative"},
		"bare number":       {func(i *config.Instance) { i.Options["tokenExpiration"] = 60 }, "duration"},
	}
	for name, c := range cases {
		inst := ok
		inst.Options = map[string]any{}
		for k, v := range ok.Options {
			inst.Options[k] = v
		}
		c.mut(&inst)
		_, err := arcgis.FromConfig(context.Background(), inst, deps)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestDeployExampleBuilds(t *testing.T) {
	const path = "../../deploy/config/arcgis.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	placeholders := func(name string) (string, bool) {
		return "placeholder-for-" + name, !strings.HasPrefix(name, "JOBBRIDGE_")
	}
	c, _, err := config.Parse(path, data, placeholders)
	if err != nil {
		t.Fatal(err)
	}
	flavorsSeen := map[string]bool{}
	for _, inst := range c.Instances {
		bi, err := arcgis.FromConfig(context.Background(), inst, pollkit.Deps{Env: placeholders})
		if err != nil {
			t.Errorf("%s: %v", inst.Name, err)
			continue
		}
		if bi.Discover != inst.Discover {
			t.Errorf("%s: discover %v", inst.Name, bi.Discover)
		}
		flavorsSeen[inst.Options["flavor"].(string)] = true
	}
	if len(flavorsSeen) != 3 {
		t.Errorf("the example shows flavours %v; want all three", flavorsSeen)
	}
}

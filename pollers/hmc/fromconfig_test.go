package hmc_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// env resolves every secret reference; JOBBRIDGE_* overrides stay unset.
func env(k string) (string, bool) {
	if strings.HasPrefix(k, "JOBBRIDGE_") {
		return "", false
	}
	return "pw-from-" + k, true
}

func TestDeployExampleBuilds(t *testing.T) {
	data, err := os.ReadFile("../../deploy/config/hmc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Parse("hmc.yaml", data, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Instances) == 0 {
		t.Fatal("no instance in the example")
	}
	for _, inst := range c.Instances {
		bi, err := hmc.FromConfig(context.Background(), inst, pollkit.Deps{Env: env})
		if err != nil {
			t.Fatalf("%s: %v", inst.Name, err)
		}
		p := bi.Poller.(*hmc.Poller)
		if n := p.Notifications(); n.Mode != hmc.NotifySTOMP || n.STOMPPort != 61612 || n.Host != "hmc.example.com" {
			t.Errorf("notifications %+v", n)
		}
		if bi.OnTerminal != nil || bi.Vendor != hmc.Vendor || bi.Name != inst.Name || bi.Concurrency != 3 {
			t.Errorf("instance %+v", bi)
		}
	}
}

func TestFromConfigOptions(t *testing.T) {
	base := config.Instance{
		Name: "hmc1", Vendor: hmc.Vendor, URL: "https://hmc.example.com:6794",
		Auth: config.Auth{Username: "u", Password: config.SecretRef{Env: "PW"}},
	}
	bi, err := hmc.FromConfig(context.Background(), base, pollkit.Deps{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if n := bi.Poller.(*hmc.Poller).Notifications(); n.Mode != hmc.NotifyNone || n.STOMPPort != hmc.DefaultSTOMPPort || bi.OnTerminal != nil {
		t.Fatalf("defaults: %+v %v", n, bi.OnTerminal != nil)
	}
	with := base
	with.Options = map[string]any{"deleteCompleted": true, "notifications": "SSE", "stompPort": 61613}
	bi, err = hmc.FromConfig(context.Background(), with, pollkit.Deps{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if n := bi.Poller.(*hmc.Poller).Notifications(); n.Mode != hmc.NotifySSE || n.STOMPPort != 61613 || bi.OnTerminal == nil {
		t.Fatalf("options: %+v %v", n, bi.OnTerminal != nil)
	}

	for name, c := range map[string]struct {
		tweak func(*config.Instance)
		want  string
	}{
		"unknown option": {func(i *config.Instance) { i.Options = map[string]any{"deleteComplete": true} }, "known options: deleteCompleted, notifications, safetyInterval, sseIdleTimeout, stompHost, stompLogin, stompPlain, stompPort"},
		"bad mode":       {func(i *config.Instance) { i.Options = map[string]any{"notifications": "jms"} }, "want stomp, sse or none"},
		"bad port":       {func(i *config.Instance) { i.Options = map[string]any{"stompPort": 0x10000} }, "not a TCP port"},
		"no user":        {func(i *config.Instance) { i.Auth.Username = "" }, "auth.username is required"},
		"no password":    {func(i *config.Instance) { i.Auth.Password = config.SecretRef{} }, "password"},
		"token":          {func(i *config.Instance) { i.Auth.Token = config.SecretRef{Value: "t"} }, "remove auth.token"},
		"url with /api":  {func(i *config.Instance) { i.URL += "/api" }, "ends in /api"},
		"wrong type":     {func(i *config.Instance) { i.Options = map[string]any{"deleteCompleted": "maybe"} }, "deleteCompleted"},
	} {
		inst := base
		c.tweak(&inst)
		_, err := hmc.FromConfig(context.Background(), inst, pollkit.Deps{Env: env})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}

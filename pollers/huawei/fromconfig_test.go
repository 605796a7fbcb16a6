package huawei_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/huawei/huaweisim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

func env(vals map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
}

func TestFromConfigAcceptsTheDeployExample(t *testing.T) {
	data, err := os.ReadFile("../../deploy/config/huawei.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"HUAWEI_PASSWORD": "pw"})
	c, warns, err := config.Parse("huawei.yaml", data, e)
	if err != nil || len(warns) != 0 {
		t.Fatalf("parse: %v %v", err, warns)
	}
	inst, err := huawei.FromConfig(context.Background(), c.Instances[0], pollkit.Deps{Env: e, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("FromConfig: %v", err)
	}
	if inst.Vendor != huawei.Vendor || inst.Name != "servicestage-ap" || inst.Poller == nil || inst.Recurring {
		t.Fatalf("%+v", inst)
	}
}

func simInstance(sim *huaweisim.Server, mutate func(*config.Instance)) config.Instance {
	in := config.DefaultInstance()
	in.Name, in.Vendor, in.URL = "ap", huawei.Vendor, sim.URL
	in.Auth = config.Auth{Username: user, Password: config.SecretRef{Env: "PW"}, Domain: huaweisim.DefaultDomain, Project: sim.ProjectID()}
	in.Options = map[string]any{"iamURL": sim.URL, "apiVersion": "v3", "taskPageSize": 2}
	if mutate != nil {
		mutate(&in)
	}
	return in
}

func TestFromConfigPollsTheSimulator(t *testing.T) {
	sim := huaweisim.NewServer(huaweisim.Options{Users: map[string]string{user: password}})
	defer sim.Close()
	sim.AddJob(huaweisim.Job{ID: "j", Script: hold("RUNNING"), Tasks: []huaweisim.Task{
		{ID: "a", Script: hold("RUNNING")}, {ID: "b", Script: hold("RUNNING")}, {ID: "c", Script: hold("RUNNING")}}})
	deps := pollkit.Deps{Env: env(map[string]string{"PW": password}), Logger: zerolog.Nop()}
	// auth.project holding a 32-hex id is taken as the project id.
	inst, err := huawei.FromConfig(context.Background(), simInstance(sim, nil), deps)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := inst.Poller.Poll(context.Background(), bridge.JobRef{Vendor: huawei.Vendor, Instance: "ap", ID: "j"})
	if err != nil || len(obs.Tasks) != 3 {
		t.Fatalf("%+v %v", obs, err)
	}
	for _, q := range sim.Queries() {
		if q.Version != "v3" || q.Limit != 2 {
			t.Errorf("query %+v", q)
		}
	}
}

func TestFromConfigRejects(t *testing.T) {
	sim := huaweisim.NewServer(huaweisim.Options{})
	defer sim.Close()
	deps := pollkit.Deps{Env: env(map[string]string{"PW": password}), Logger: zerolog.Nop()}
	for name, c := range map[string]struct {
		mutate func(*config.Instance)
		says   string
	}{
		"unknown option": {func(in *config.Instance) { in.Options["pageSize"] = 3 }, "known options"},
		"aksk":           {func(in *config.Instance) { in.Auth.AccessKey = "AK" }, "AK/SK"},
		"token":          {func(in *config.Instance) { in.Auth.Token = config.SecretRef{Value: "t"} }, "auth.token"},
		"missing secret": {func(in *config.Instance) { in.Auth.Password = config.SecretRef{Env: "NOPE"} }, "auth.password"},
		"no domain":      {func(in *config.Instance) { in.Auth.Domain = "" }, "Domain"},
		"bad version":    {func(in *config.Instance) { in.Options["apiVersion"] = "v9" }, "v2 or v3"},
		"no project":     {func(in *config.Instance) { in.Auth.Project = "" }, "ProjectID"},
	} {
		_, err := huawei.FromConfig(context.Background(), simInstance(sim, c.mutate), deps)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.says)
		}
		if errors.Is(err, bridge.ErrAuth) {
			t.Errorf("%s: a configuration error wraps ErrAuth", name)
		}
	}
}

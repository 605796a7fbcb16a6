package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"embed"
	"fmt"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/arcgis/arcgissim"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/huawei/huaweisim"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/registry"
	"github.com/rs/zerolog"
)

// demodata holds one short scenario per simulated vendor, faults included,
// so the demo shows each vendor's traps being handled.
//
//go:embed demodata/*.yaml
var demodata embed.FS

// simulated is what the demo needs of a running simulator.
type simulated struct {
	url  string
	cert *x509.Certificate
	stop func()
}

// scenarioVendor is a demo vendor driven by a scenario file: start the
// simulator over TLS, then configure an instance as a user would.
type scenarioVendor struct {
	vendor string
	jobs   []string
	start  func(scenario []byte) (simulated, error)
	// instance fills auth, URL and options for the running simulator.
	instance func(inst *config.Instance, sim simulated)
}

func listenTLS[O any, S interface {
	Certificate() *x509.Certificate
	Close()
}](load func(*bytes.Reader) (O, error), setTLS func(*O), listen func(string, O) (S, error), url func(S) string) func([]byte) (simulated, error) {
	return func(b []byte) (simulated, error) {
		opts, err := load(bytes.NewReader(b))
		if err != nil {
			return simulated{}, err
		}
		setTLS(&opts)
		s, err := listen("127.0.0.1:0", opts)
		if err != nil {
			return simulated{}, err
		}
		return simulated{url: url(s), cert: s.Certificate(), stop: s.Close}, nil
	}
}

func scenarioVendors() []scenarioVendor {
	secret := func(v string) config.SecretRef { return config.SecretRef{Value: v} }
	return []scenarioVendor{
		{
			vendor: helix.Vendor, jobs: []string{"321", "53", "90"},
			start: listenTLS(func(r *bytes.Reader) (helixsim.Options, error) { return helixsim.LoadScenario(r) },
				func(o *helixsim.Options) { o.TLS = true }, helixsim.Listen, func(s *helixsim.Server) string { return s.URL }),
			instance: func(in *config.Instance, sim simulated) {
				in.Auth.AccessKey, in.Auth.SecretKey = "AK-demo", secret("demo-secret")
				in.Options = map[string]any{"tenantID": "1234"}
			},
		},
		{
			vendor: arcgis.Vendor, jobs: []string{"j522676d9-983a-48e2-a51c-5066966160f0", "mission-cancelled"},
			start: listenTLS(func(r *bytes.Reader) (arcgissim.Options, error) { return arcgissim.LoadScenario(r) },
				func(o *arcgissim.Options) { o.TLS = true }, arcgissim.Listen, func(s *arcgissim.Server) string { return s.URL }),
			instance: func(in *config.Instance, sim simulated) {
				in.URL = sim.url + arcgissim.MissionRoot
				in.Auth.Username, in.Auth.Password = "svc-demo", secret("demo-secret")
				in.Options = map[string]any{"flavor": "mission", "tokenURL": sim.url + arcgissim.PortalTokenPath}
			},
		},
		{
			vendor: huawei.Vendor, jobs: []string{"JOB474362ef-091d-429f-9b3e-c9246b37dee6"},
			start: listenTLS(func(r *bytes.Reader) (huaweisim.Options, error) { return huaweisim.LoadScenario(r) },
				func(o *huaweisim.Options) { o.TLS = true }, huaweisim.Listen, func(s *huaweisim.Server) string { return s.URL }),
			instance: func(in *config.Instance, sim simulated) {
				in.Auth.Username, in.Auth.Password, in.Auth.Domain = "demo", secret("demo-secret"), "demo-account"
				in.Options = map[string]any{"iamURL": sim.url, "projectID": "063a3158b1a34710b36ad208b9497d00", "region": "ap-southeast-1"}
			},
		},
		{
			vendor: hmc.Vendor, jobs: []string{"86e44546-107f-11e1-bde0-0010184c8334", "0b1c5a52-3f0e-11ef-9a31-fa163e2c7d01", "5d7f7e30-3f0e-11ef-8b2a-fa163e2c7d01"},
			start: listenTLS(func(r *bytes.Reader) (hmcsim.Options, error) { return hmcsim.LoadScenario(r) },
				func(o *hmcsim.Options) { o.TLS = true }, hmcsim.Listen, func(s *hmcsim.Server) string { return s.URL }),
			instance: func(in *config.Instance, sim simulated) {
				in.Auth.Username, in.Auth.Password = "demo", secret("demo-secret")
			},
		},
	}
}

// start runs the vendor's simulator and builds its instance through the
// same factory a configuration file goes through.
func (v scenarioVendor) startDemo(ctx context.Context, dir string, log zerolog.Logger) (demoSim, error) {
	scenario, err := demodata.ReadFile("demodata/" + v.vendor + ".yaml")
	if err != nil {
		return demoSim{}, err
	}
	sim, err := v.start(scenario)
	if err != nil {
		return demoSim{}, fmt.Errorf("%s simulator: %w", v.vendor, err)
	}
	ca, err := writeCA(dir, v.vendor, sim.cert.Raw)
	if err != nil {
		sim.stop()
		return demoSim{}, err
	}
	inst := config.DefaultInstance()
	inst.Name, inst.Vendor, inst.URL = "demo", v.vendor, sim.url
	inst.TLS.CAFile = ca
	v.instance(&inst, sim)
	insts, err := registry.Build(ctx, []config.Instance{inst}, pollkit.Deps{Logger: log})
	if err != nil {
		sim.stop()
		return demoSim{}, err
	}
	return demoSim{instance: insts[0], jobs: v.jobs, close: sim.stop}, nil
}

package main

import (
	"context"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/tso"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
	"github.com/rs/zerolog"
)

// demoVendor is one simulated vendor in the demo: it starts its simulator,
// returns the bridge instance that polls it, the jobs to watch at once, and
// a function that starts one more job (the demo keeps jobs coming).
type demoVendor struct {
	name  string
	start func(ctx context.Context, dir string, log zerolog.Logger) (demoSim, error)
}

type demoSim struct {
	instance bridge.Instance
	jobs     []string
	newJob   func(n int) string
	close    func()
}

func demoVendors() []demoVendor {
	out := []demoVendor{{name: tso.Vendor, start: startTSODemo}}
	for _, v := range scenarioVendors() {
		out = append(out, demoVendor{name: v.vendor, start: v.startDemo})
	}
	return out
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	every := fs.Duration("new-job-every", 3*time.Second, "start a new simulated job this often")
	verbose := fs.Bool("verbose", false, "show the bridge's info logs")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "jobbridge-demo-")
	if err != nil {
		return fmt.Errorf("demo data directory: %w", err)
	}
	defer os.RemoveAll(dir)
	level := "warn"
	if *verbose {
		level = "info"
	}
	log, err := newLogger(stderr, level, "console")
	if err != nil {
		return err
	}

	cfg := config.Default()
	cfg.DataDir = dir
	cfg.NATS.Embedded.StoreDir = filepath.Join(dir, "nats")
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Schedule.Interval = config.Duration(time.Second)
	cfg.Schedule.FastInterval = config.Duration(500 * time.Millisecond)
	cfg.Schedule.IdleInterval = config.Duration(5 * time.Second)
	cfg.Schedule.RetainAfterTerminal = config.Duration(30 * time.Second)

	var sims []demoSim
	defer func() {
		for _, s := range sims {
			s.close()
		}
	}()
	var so stackOptions
	for _, v := range demoVendors() {
		s, err := v.start(ctx, dir, log)
		if err != nil {
			return fmt.Errorf("demo %s simulator: %w", v.name, err)
		}
		sims = append(sims, s)
		so.extraInstances = append(so.extraInstances, s.instance)
		for _, id := range s.jobs {
			so.extraWatches = append(so.extraWatches, bridge.Watch{Vendor: s.instance.Vendor, Instance: s.instance.Name, Job: id, Origin: "demo"})
		}
	}
	st, err := startStack(ctx, cfg, log, so)
	if err != nil {
		return err
	}
	defer st.close()

	fmt.Fprintf(stdout, "jobbridge demo: embedded NATS at %s, stream JOBS, subjects jobs.<vendor>.<instance>.<state>.<job>\n", st.natsURL)
	fmt.Fprintf(stdout, "  in another terminal: go run ./cmd/jobbridge tail --nats %s --json   (Ctrl-C stops the demo)\n\n", st.natsURL)

	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr <- st.bridge.Run(ctx)
	}()
	select {
	case <-st.bridge.Ready():
	case err := <-runErr:
		return err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := tailEvents(ctx, st.nc, tailOptions{all: true, stream: "JOBS", prefix: "jobs"}, stdout); err != nil {
			log.Warn().Err(err).Msg("live view stopped")
		}
	}()
	go func() {
		defer wg.Done()
		demoJobFeed(ctx, st, sims, *every, log)
	}()
	wg.Wait()
	fmt.Fprintln(stdout, "\ndemo stopped")
	return <-runErr
}

// demoJobFeed starts a new simulated job every interval, round-robin over
// the vendors, and watches it through the watch registry as a user would.
func demoJobFeed(ctx context.Context, st *stack, sims []demoSim, every time.Duration, log zerolog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var feeders []demoSim
		for _, s := range sims {
			if s.newJob != nil {
				feeders = append(feeders, s)
			}
		}
		if len(feeders) == 0 {
			return
		}
		s := feeders[n%len(feeders)]
		id := s.newJob(n)
		w := bridge.Watch{Vendor: s.instance.Vendor, Instance: s.instance.Name, Job: id, Origin: "demo"}
		if _, _, err := st.bridge.Registry().Add(ctx, w); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("demo could not watch a new job")
		}
	}
}

// writeCA stores a simulator's certificate as a CA file, so that the demo
// talks to it with TLS verification on, as production does.
func writeCA(dir, name string, der []byte) (string, error) {
	p := filepath.Join(dir, name+"-ca.pem")
	return p, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

func startTSODemo(_ context.Context, dir string, log zerolog.Logger) (demoSim, error) {
	steps := func(s ...tsosim.Step) []tsosim.Step { return s }
	sec := func(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }
	sim, err := tsosim.Listen("127.0.0.1:0", tsosim.Options{
		TLS:   true,
		Users: map[string]string{"demo": "demo-password"},
		Jobs: []tsosim.Job{
			{ID: "nightly-backup", ProcessName: ":Ops:Backup:Nightly", Script: steps(
				tsosim.Step{Status: "READY", For: sec(2)}, tsosim.Step{Status: "ASSIGNED", For: sec(4)},
				tsosim.Step{Status: "PAUSED", For: sec(2)}, tsosim.Step{Status: "IN_PROGRESS", For: sec(3)},
				tsosim.Step{Status: "COMPLETED", Output: []tsosim.Param{{Name: "files", Value: "42"}}})},
			{ID: "patch-rollout", ProcessName: ":Ops:Patch:Rollout", Script: steps(
				tsosim.Step{Status: "PENDING", For: sec(1)}, tsosim.Step{Status: "ASSIGNED", For: sec(5)}, tsosim.Step{Status: "COMPENSATED"})},
			{ID: "ticket 42/rollback?", ProcessName: ":Ops:Change:Rollback", Script: steps(
				tsosim.Step{Status: "ASSIGNED", For: sec(6)}, tsosim.Step{Status: "CANCELLED"})},
		},
	})
	if err != nil {
		return demoSim{}, err
	}
	ca, err := writeCA(dir, "tso", sim.Certificate().Raw)
	if err != nil {
		sim.Close()
		return demoSim{}, err
	}
	inst := config.DefaultInstance()
	inst.Name, inst.Vendor, inst.URL = "demo", tso.Vendor, sim.URL
	inst.TLS.CAFile = ca
	p, err := tso.New(tso.Options{Instance: "demo", BaseURL: sim.URL, Username: "demo",
		Password: bridge.NewSecret("demo-password"), HTTP: pollkit.ClientOptionsFor(inst, log), Logger: log})
	if err != nil {
		sim.Close()
		return demoSim{}, err
	}
	outcomes := []tsosim.Step{{Status: "COMPLETED"}, {Status: "COMPLETED"}, {Status: "COMPLETED"}, {Status: "FAILED"}, {Status: "ABORTED"}, {Status: "CANCELLED"}}
	return demoSim{
		instance: pollkit.InstanceFor(inst, p),
		jobs:     []string{"nightly-backup", "patch-rollout", "ticket 42/rollback?"},
		newJob: func(n int) string {
			id := fmt.Sprintf("tso-job-%03d", n)
			sim.AddJob(id, steps(tsosim.Step{Status: "READY", For: sec(1 + rand.Float64())},
				tsosim.Step{Status: "ASSIGNED", For: sec(2 + 3*rand.Float64())}, outcomes[rand.IntN(len(outcomes))]))
			return id
		},
		close: sim.Close,
	}, nil
}

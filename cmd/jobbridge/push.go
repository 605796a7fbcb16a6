package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	hmcnotify "github.com/jobbridge/jobbridge/notifiers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// pushSetup is one HMC instance whose job completions arrive pushed.
type pushSetup struct {
	inst   config.Instance
	poller *hmc.Poller
	via    *hmcnotify.ViaPoller
	opts   hmc.ConfigOptions
}

// preparePush turns the HMC instances with notifications on into
// push-driven ones: their poller marks hinted polls as stomp/sse, and their
// jobs are polled only at the safety interval between notifications.
func preparePush(cfgInsts []config.Instance, built []bridge.Instance) ([]pushSetup, error) {
	var out []pushSetup
	byName := map[string]config.Instance{}
	for _, in := range cfgInsts {
		byName[in.Name] = in
	}
	for i := range built {
		p, ok := built[i].Poller.(*hmc.Poller)
		if !ok {
			continue
		}
		mode := p.Notifications().Mode
		if mode != hmc.NotifySTOMP && mode != hmc.NotifySSE {
			continue
		}
		inst := byName[built[i].Name]
		co, err := hmc.DecodeConfigOptions(inst)
		if err != nil {
			return nil, err
		}
		via := hmcnotify.NewViaPoller(p)
		built[i].Poller = via
		built[i].Interval = hmcnotify.InstanceInterval(mode, co.SafetyInterval)
		built[i].PushDriven = true
		out = append(out, pushSetup{inst: inst, poller: p, via: via, opts: co})
	}
	return out, nil
}

// startPush starts one notifier per push-driven HMC instance.
func startPush(ctx context.Context, setups []pushSetup, b *bridge.Bridge, log zerolog.Logger, reg prometheus.Registerer) ([]*hmcnotify.Notifier, error) {
	var out []*hmcnotify.Notifier
	for _, s := range setups {
		n := s.poller.Notifications()
		host := n.Host
		if s.opts.StompHost != "" {
			host = s.opts.StompHost
		}
		tlsCfg, err := pollkit.TLSConfig(pollkit.ClientOptionsFor(s.inst, log))
		if err != nil {
			return out, fmt.Errorf("instance %s: TLS for notifications: %w", s.inst.Name, err)
		}
		opts := hmcnotify.Options{
			Poller: s.poller, Hinter: b, Marker: s.via, Vendor: hmc.Vendor, Instance: s.inst.Name,
			Mode: n.Mode, STOMPAddr: net.JoinHostPort(host, strconv.Itoa(n.STOMPPort)), TLS: tlsCfg,
			PlainSTOMP: s.opts.StompPlain, BaseURL: s.inst.URL, SSEIdleTimeout: s.opts.SSEIdleTimeout,
			SafetyInterval: s.opts.SafetyInterval, Logger: log.With().Str("instance", s.inst.Name).Logger(), Registerer: reg,
		}
		if s.opts.StompLogin == string(hmcnotify.LoginPassword) {
			pw, err := s.inst.Auth.Password.Resolve(lookupEnv)
			if err != nil {
				return out, fmt.Errorf("instance %s: auth.password: %w", s.inst.Name, err)
			}
			opts.Login, opts.UserID, opts.Password = hmcnotify.LoginPassword, s.inst.Auth.Username, pw
		}
		nt, err := hmcnotify.Start(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("instance %s: %w", s.inst.Name, err)
		}
		log.Info().Str("instance", s.inst.Name).Str("mode", string(n.Mode)).Msg("HMC job completions arrive pushed; jobs are polled at the safety interval between notifications")
		out = append(out, nt)
	}
	return out, nil
}

package hmc

import (
	"context"
	"fmt"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ConfigOptions are the HMC-specific keys of an instance's options.
type ConfigOptions struct {
	// DeleteCompleted deletes a job's status on the HMC once its terminal
	// event is acknowledged. Default false: only turn it on for jobs that
	// nobody else reads the results of.
	DeleteCompleted bool `yaml:"deleteCompleted"`
	// Notifications is stomp, sse or none (default). It is decoded here for
	// the notifiers, which the registry starts from the same instance.
	Notifications string `yaml:"notifications"`
	// StompPort is the HMC's STOMP-over-TLS port; default 61612.
	StompPort int `yaml:"stompPort"`
	// SafetyInterval is how often jobs are polled between notifications
	// when notifications are on (default 5m).
	SafetyInterval time.Duration `yaml:"safetyInterval"`
	// StompPlain connects without TLS (an HMC configured for plain 61613).
	StompPlain bool `yaml:"stompPlain"`
	// StompLogin is session (the API session id and credential; works with
	// MFA; default) or password.
	StompLogin string `yaml:"stompLogin"`
	// StompHost overrides the broker host (default: the URL's host).
	StompHost string `yaml:"stompHost"`
	// SSEIdleTimeout reconnects a stream silent this long (0: never).
	SSEIdleTimeout time.Duration `yaml:"sseIdleTimeout"`
}

// DecodeConfigOptions reads an instance's HMC options (for the notifier
// wiring, which starts from the same configuration).
func DecodeConfigOptions(inst config.Instance) (ConfigOptions, error) {
	var co ConfigOptions
	err := pollkit.DecodeOptions(inst, &co)
	return co, err
}

// FromConfig builds an HMC instance from configuration. The returned
// Instance's Poller is a *Poller, which the notifiers type-assert to reach
// its session. With deleteCompleted, OnTerminal deletes each job's status
// after its terminal event.
func FromConfig(_ context.Context, inst config.Instance, deps pollkit.Deps) (bridge.Instance, error) {
	var co ConfigOptions
	if err := pollkit.DecodeOptions(inst, &co); err != nil {
		return bridge.Instance{}, err
	}
	mode, err := ParseNotificationMode(co.Notifications)
	if err != nil {
		return bridge.Instance{}, fmt.Errorf("instance %s: options.%w", inst.Name, err)
	}
	if !inst.Auth.Token.IsZero() || inst.Auth.AccessKey != "" || !inst.Auth.SecretKey.IsZero() {
		return bridge.Instance{}, fmt.Errorf("instance %s: the HMC logs on with auth.username and auth.password only; remove auth.token, auth.accessKey and auth.secretKey", inst.Name)
	}
	if inst.Auth.Username == "" {
		return bridge.Instance{}, fmt.Errorf("instance %s: auth.username is required: the HMC user whose jobs are watched (a job belongs to the user that started it)", inst.Name)
	}
	pw, err := pollkit.ResolveSecret(inst, "password", inst.Auth.Password, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	p, err := New(Options{
		Instance: inst.Name, BaseURL: inst.URL, UserID: inst.Auth.Username, Password: pw,
		HTTP: pollkit.ClientOptionsWith(inst, deps), Logger: deps.Logger,
		DeleteCompleted: co.DeleteCompleted, Notifications: mode, STOMPPort: co.StompPort,
	})
	if err != nil {
		return bridge.Instance{}, err
	}
	bi := pollkit.InstanceFor(inst, p)
	if co.DeleteCompleted {
		bi.OnTerminal = p.OnTerminal
	}
	return bi, nil
}

package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/natsconn"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// urlFile is where run and demo leave the embedded server's URL, so that
// tail and watch on the same machine find it without flags.
const urlFile = "nats.url"

// clientFlags are the NATS connection flags of the client commands.
type clientFlags struct {
	url     string
	creds   string
	user    string
	dataDir string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "nats", "", "NATS URL (default: $JOBBRIDGE_NATS_URL, then the embedded server's URL in --data-dir, then nats://127.0.0.1:4222)")
	fs.StringVar(&c.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&c.user, "user", "", "NATS user; the password comes from $JOBBRIDGE_NATS_PASSWORD")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "jobbridge data directory, to find an embedded server's URL")
}

func (c *clientFlags) resolveURL() string {
	if c.url != "" {
		return c.url
	}
	if v := os.Getenv("JOBBRIDGE_NATS_URL"); v != "" {
		return v
	}
	if b, err := os.ReadFile(filepath.Join(c.dataDir, urlFile)); err == nil {
		if u := strings.TrimSpace(string(b)); u != "" {
			return u
		}
	}
	return nats.DefaultURL
}

func (c *clientFlags) connect(ctx context.Context, log zerolog.Logger) (*nats.Conn, error) {
	return natsconn.Connect(ctx, natsconn.ConnectOptions{
		URL: c.resolveURL(), Name: "jobbridge-cli", CredsFile: c.creds, User: c.user,
		Password:       bridge.NewSecret(os.Getenv("JOBBRIDGE_NATS_PASSWORD")),
		ConnectTimeout: 5 * time.Second, Logger: log,
	})
}

// Command jobwait blocks until one job watched by jobbridge ends, and exits
// with the job's outcome: for shell scripts and CI steps that start a vendor
// job and must not go on before it is done.
//
// It is also the reference Go consumer of the event stream. It reads the
// stream through a durable pull consumer filtered to the one job (so a
// restart resumes where it stopped and sees events published while it was
// down), acknowledges every event explicitly, drops copies by CloudEvents
// (source, id) and anything whose per-job sequence is not newer than what it
// has seen, and accepts both wire modes the bridge can publish.
//
// Exit status: 0 the job succeeded; 1 it failed, was canceled or vanished;
// 2 usage or connection error; 124 the timeout passed first.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Exit codes. 124 is what timeout(1) uses, so scripts can treat both alike.
const (
	exitSucceeded = 0
	exitFailed    = 1
	exitError     = 2
	exitTimeout   = 124
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// options are the command line, checked.
type options struct {
	server, creds, user, caFile string
	password, token             string // from the environment only: flags show up in ps
	stream, prefix              string
	vendor, instance, job       string
	durable                     string
	inactive                    time.Duration
	timeout                     time.Duration
	keep, jsonOut               bool
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("jobwait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `jobwait: wait for a jobbridge job to end; exit 0 if it succeeded, 1 if it failed,
was canceled or vanished, 2 on a usage or connection error, 124 on timeout.

Usage: jobwait --vendor V --instance I --job ID [flags]

NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD and NATS_TOKEN are read from the
environment (passwords and tokens only from there, never from flags).

`)
		fs.PrintDefaults()
	}
	def := func(env, fallback string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&o.server, "server", def("NATS_URL", nats.DefaultURL), "NATS server URL(s), comma-separated")
	fs.StringVar(&o.creds, "creds", getenv("NATS_CREDS"), "NATS credentials file (JWT + NKey)")
	fs.StringVar(&o.user, "user", getenv("NATS_USER"), "NATS user (password from NATS_PASSWORD)")
	fs.StringVar(&o.caFile, "tlsca", "", "PEM file of the CA that signed the NATS server's certificate")
	fs.StringVar(&o.stream, "stream", "JOBS", "JetStream stream that holds the events (stream.name)")
	fs.StringVar(&o.prefix, "prefix", "jobs", "subject prefix of the events (stream.subjectPrefix)")
	fs.StringVar(&o.vendor, "vendor", "", "vendor of the job: tso, helix, arcgis, huawei, hmc (required)")
	fs.StringVar(&o.instance, "instance", "", "instance name from the bridge configuration (required)")
	fs.StringVar(&o.job, "job", "", "vendor job id, verbatim (required)")
	fs.StringVar(&o.durable, "durable", "", "durable consumer name (default: derived from the job, so a re-run resumes)")
	fs.DurationVar(&o.inactive, "inactive", time.Hour, "the server deletes the consumer after this long without a reader")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0 waits forever)")
	fs.BoolVar(&o.keep, "keep", false, "keep the durable consumer after the job ended")
	fs.BoolVar(&o.jsonOut, "json", false, "print each event as its CloudEvents JSON instead of a summary line")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every value is given with a flag", fs.Arg(0))
	}
	o.password, o.token = getenv("NATS_PASSWORD"), getenv("NATS_TOKEN")
	if err := bridge.ValidateName("vendor", o.vendor); err != nil {
		return o, fmt.Errorf("--vendor: %w", err)
	}
	if err := bridge.ValidateName("instance", o.instance); err != nil {
		return o, fmt.Errorf("--instance: %w", err)
	}
	if err := bridge.ValidateJobID(o.job); err != nil {
		return o, fmt.Errorf("--job: %w", err)
	}
	if err := bridge.ValidatePrefix(o.prefix); err != nil {
		return o, fmt.Errorf("--prefix: %w", err)
	}
	if o.timeout < 0 || o.inactive <= 0 {
		return o, errors.New("--timeout must be >= 0 and --inactive > 0")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitSucceeded
	}
	if err != nil {
		fmt.Fprintln(stderr, "jobwait:", err)
		return exitError
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	code, err := wait(ctx, o, stdout, stderr)
	switch {
	case err == nil:
		return code
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "jobwait: job %q did not end within %s\n", o.job, o.timeout)
		return exitTimeout
	default:
		fmt.Fprintln(stderr, "jobwait:", err)
		return exitError
	}
}

// wait consumes the job's events until one ends the wait.
func wait(ctx context.Context, o options, stdout, stderr io.Writer) (int, error) {
	nopts := []nats.Option{nats.Name("jobwait"), nats.MaxReconnects(-1)}
	switch {
	case o.creds != "":
		nopts = append(nopts, nats.UserCredentials(o.creds))
	case o.user != "":
		nopts = append(nopts, nats.UserInfo(o.user, o.password))
	case o.token != "":
		nopts = append(nopts, nats.Token(o.token))
	}
	if o.caFile != "" {
		nopts = append(nopts, nats.RootCAs(o.caFile))
	}
	nc, err := nats.Connect(o.server, nopts...)
	if err != nil {
		return 0, fmt.Errorf("connect to NATS at %s: %w (set --server or NATS_URL)", o.server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("JetStream: %w", err)
	}

	subjects := bridge.Subjects{Prefix: o.prefix}
	// The job's own events and its tasks' events ('>' never matches zero
	// tokens, hence two filters). Values are escaped, so a job id holding
	// '.', '*' or '>' selects that job only.
	filters := subjects.Filters(o.vendor, o.instance, "", o.job)
	name := o.durable
	if name == "" {
		name = durableName(o.stream, filters)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, o.stream, jetstream.ConsumerConfig{
		Durable:           name,
		Description:       "jobwait " + o.vendor + "/" + o.instance + "/" + o.job,
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           30 * time.Second,
		InactiveThreshold: o.inactive,
	})
	if err != nil {
		return 0, fmt.Errorf("create or bind consumer %s on stream %s: %w (is the bridge's stream there? see --stream)", name, o.stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("consume %s: %w", name, err)
	}
	defer it.Stop()

	f := newFilter()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("read from consumer %s: %w", name, err)
		}
		ev, err := decode(msg.Headers(), msg.Data())
		if err != nil {
			// Not a jobbridge event: say so, and do not see it again.
			fmt.Fprintf(stderr, "jobwait: skipping message on %s: %v\n", msg.Subject(), err)
			_ = msg.Term()
			continue
		}
		if !f.fresh(ev) {
			_ = msg.Ack()
			continue
		}
		if err := printEvent(stdout, ev, o.jsonOut); err != nil {
			return 0, fmt.Errorf("write event: %w", err)
		}
		code, done := verdict(ev.data)
		if !done {
			_ = msg.Ack()
			continue
		}
		// The outcome is decided: make sure the server has the ack before
		// the consumer goes, so a --keep consumer does not replay it.
		if err := msg.DoubleAck(ctx); err != nil {
			fmt.Fprintf(stderr, "jobwait: ack of the final event: %v\n", err)
		}
		if !o.keep {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := js.DeleteConsumer(dctx, o.stream, name); err != nil {
				fmt.Fprintf(stderr, "jobwait: delete consumer %s: %v (the server drops it after --inactive)\n", name, err)
			}
			cancel()
		}
		fmt.Fprintf(stderr, "jobwait: job %q ended: %s\n", o.job, outcome(ev.data))
		return code, nil
	}
}

// durableName is stable for one job, so a re-run binds the consumer a
// killed run left behind and resumes after its last ack.
func durableName(stream string, filters []string) string {
	sum := sha256.Sum256([]byte(stream + "\x00" + strings.Join(filters, "\x00")))
	return "jobwait-" + hex.EncodeToString(sum[:10])
}

// event is one decoded jobbridge event.
type event struct {
	ce   cloudevents.Event
	data bridge.EventData
	seq  uint64
	// key orders events: the per-job sequence counts per job, and per task
	// for task events (the partitionkey extension).
	key string
}

// decode reads a message in structured mode (the CloudEvents NATS binding)
// or, when the bridge runs with publish.mode binary, from ce- headers.
func decode(h nats.Header, body []byte) (event, error) {
	var ev event
	ev.ce = cloudevents.New()
	if binaryMode(h) {
		if err := fromBinary(&ev.ce, h, body); err != nil {
			return ev, err
		}
	} else if err := json.Unmarshal(body, &ev.ce); err != nil {
		return ev, fmt.Errorf("not a structured CloudEvent: %s", strings.TrimSpace(err.Error()))
	}
	if err := ev.ce.Validate(); err != nil {
		return ev, fmt.Errorf("invalid CloudEvent: %s", strings.TrimSpace(err.Error()))
	}
	if err := ev.ce.DataAs(&ev.data); err != nil {
		return ev, fmt.Errorf("event %s: data: %w", ev.ce.ID(), err)
	}
	ext := ev.ce.Extensions()
	seq, err := types.ToString(ext[bridge.ExtSequence])
	if err != nil {
		return ev, fmt.Errorf("event %s: no %s extension", ev.ce.ID(), bridge.ExtSequence)
	}
	if ev.seq, err = strconv.ParseUint(seq, 10, 64); err != nil || ev.seq == 0 {
		return ev, fmt.Errorf("event %s: sequence %q is not a positive number", ev.ce.ID(), seq)
	}
	if ev.key, err = types.ToString(ext[bridge.ExtPartitionKey]); err != nil || ev.key == "" {
		ev.key = ev.ce.Subject()
	}
	ev.key = ev.ce.Source() + "\x00" + ev.key
	return ev, nil
}

// binaryMode reports whether the attributes travel as ce- headers. NATS
// headers are case-sensitive, so the name is matched in any case.
func binaryMode(h nats.Header) bool {
	for k := range h {
		if strings.EqualFold(k, "ce-specversion") {
			return true
		}
	}
	return false
}

// fromBinary fills e from percent-encoded ce- headers (the NATS binding
// draft) and takes the body as the data.
func fromBinary(e *cloudevents.Event, h nats.Header, body []byte) error {
	for k, vs := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), "ce-")
		if !ok || len(vs) == 0 {
			continue
		}
		v, err := bridge.PercentDecode(vs[0])
		if err != nil {
			return err
		}
		switch name {
		case "specversion":
			e.SetSpecVersion(v)
		case "id":
			e.SetID(v)
		case "source":
			e.SetSource(v)
		case "type":
			e.SetType(v)
		case "subject":
			e.SetSubject(v)
		case "dataschema":
			e.SetDataSchema(v)
		case "datacontenttype":
			e.SetDataContentType(v)
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fmt.Errorf("ce-time %q: %w", v, err)
			}
			e.SetTime(t)
		default:
			e.SetExtension(name, v)
		}
	}
	if e.ID() == "" {
		return errors.New("neither a structured CloudEvent nor ce- headers")
	}
	return e.SetData(bridge.DataMediaType, body)
}

// filter drops what a consumer must not act on twice: a copy of an event it
// has seen (same source and id: the bridge re-published it after the
// stream's duplicate window), and an event older than the newest it has
// seen for the same job (the per-job sequence only grows).
type filter struct {
	seen map[string]struct{}
	last map[string]uint64
}

func newFilter() *filter {
	return &filter{seen: map[string]struct{}{}, last: map[string]uint64{}}
}

func (f *filter) fresh(ev event) bool {
	id := ev.ce.Source() + "\x00" + ev.ce.ID()
	if _, dup := f.seen[id]; dup {
		return false
	}
	f.seen[id] = struct{}{}
	if ev.seq <= f.last[ev.key] {
		return false
	}
	f.last[ev.key] = ev.seq
	return true
}

// verdict says whether ev ends the wait, and with which exit code. Task
// events never do: a task ending is not its job ending.
func verdict(d bridge.EventData) (code int, done bool) {
	switch {
	case d.Task != "":
		return 0, false
	case d.Kind == bridge.KindVanished:
		return exitFailed, true
	case d.Terminal && d.State == bridge.StateSucceeded:
		return exitSucceeded, true
	case d.Terminal:
		return exitFailed, true
	}
	return 0, false
}

func outcome(d bridge.EventData) string {
	s := string(d.State)
	if d.Kind == bridge.KindVanished {
		s = "vanished (last state " + s + ")"
	}
	if d.Native.Status != "" {
		s += fmt.Sprintf(" (native %q)", d.Native.Status)
	}
	return s
}

func printEvent(w io.Writer, ev event, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(ev.ce)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	d := ev.data
	what := string(d.State)
	if d.Kind != bridge.KindTransition {
		what = string(d.Kind) + " " + what
	}
	// The subject (vendor job id) is quoted: it may hold spaces.
	line := fmt.Sprintf("%s seq=%d %q %s", ev.ce.Time().UTC().Format(time.RFC3339Nano), ev.seq, ev.ce.Subject(), what)
	if d.Native.Status != "" {
		line += fmt.Sprintf(" native=%q", d.Native.Status)
	}
	if p := d.Progress; p != nil && p.Percent != nil {
		line += fmt.Sprintf(" %.0f%%", *p.Percent)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

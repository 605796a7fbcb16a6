package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// cmdStatus shows a scaled-out deployment: replicas, the shards they hold
// with lease ages, and jobs per shard, read from the lease and watch buckets.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	path := fs.String("config", "", "read the bucket names (and the NATS URL, unless --nats) from this config file")
	leaseBucket := fs.String("lease-bucket", "JOBBRIDGE_LEASES", "KV bucket of replicas and leases (cluster.leaseBucket)")
	watchBucket := fs.String("watch-bucket", "JOBBRIDGE_WATCHES", "KV bucket of the watch registry (stream.watchBucket)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *path != "" {
		cfg, _, err := loadConfig(*path)
		if err != nil {
			return err
		}
		*leaseBucket, *watchBucket = cfg.Cluster.LeaseBucket, cfg.Stream.WatchBucket
		if cf.url == "" {
			cf.url = cfg.NATS.URL
		}
	}
	nc, err := cf.connect(ctx, zerolog.New(stderr).Level(zerolog.WarnLevel))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := bridge.ReadClusterStatus(rctx, js, *leaseBucket, *watchBucket)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(out io.Writer, st bridge.ClusterStatus) {
	fmt.Fprintf(out, "lease bucket %s: %d shards, %d replicas, jobs watched: %d\n\n", st.LeaseBucket, st.Shards, len(st.Replicas), st.Watches)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tHOST\tHEARTBEAT\tSHARDS\tJOBS\tSINGLETONS\tUP SINCE")
	for _, r := range st.Replicas {
		hb := time.Duration(r.HeartbeatAge).String() + " ago"
		if r.Stale {
			hb += " (STALE)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d %s\t%d\t%s\t%s\n", r.ID, r.Host, hb, len(r.LeasedShards), compactRanges(r.LeasedShards),
			r.ShardJobs, strings.Join(r.Singletons, ","), r.StartedAt.Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tOWNER\tRENEWED\tHELD FOR\tJOBS")
	for _, l := range st.Leases {
		jobs := ""
		if l.Shard >= 0 {
			jobs = strconv.Itoa(l.Jobs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%s\n", l.Key, l.Owner, time.Duration(l.Age), time.Duration(l.HeldFor), jobs)
	}
	tw.Flush()
	if len(st.Unowned) > 0 {
		n := 0
		for _, s := range st.Unowned {
			n += st.JobsPerShard[s]
		}
		fmt.Fprintf(out, "\nUNOWNED shards %s (%d jobs): not polled until a replica takes them\n", compactRanges(st.Unowned), n)
	}
}

// compactRanges writes [0 1 2 5 7 8] as "0-2,5,7-8".
func compactRanges(xs []int) string {
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", xs[i], xs[j])
		} else {
			fmt.Fprintf(&b, "%d", xs[i])
		}
		i = j + 1
	}
	return b.String()
}

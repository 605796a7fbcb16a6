package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample is what `go test -p 1 -bench` prints over several packages,
// including a benchmark that printed to stdout between its name and its
// figures, b.Log lines and a failure.
const sample = `goos: linux
goarch: amd64
pkg: github.com/jobbridge/jobbridge/pollers/registry
cpu: Intel(R) Xeon(R) Processor @ 2.80GHz
BenchmarkPollRate/jobs=1000-2         	       1	     10454 alloc-B/poll	       655.1 bare-cpu-us/req	        99.91 bare-req/s	         1.171 cpu-ratio	       559.4 cpu-us/poll	     10682 heap-B/job	         0.9347 lag-p50-ms	       111.7 lag-p99-ms	         0.02235 lag-p99/interval	        99.92 polls/s	         0.9992 rate-ratio	         1.000 ratio	     13689 rss-B/job	       100.0 sched-polls/s	         1.7 bare-lag-p50-ms	       125.6 bare-lag-p99-ms
--- BENCH: BenchmarkPollRate/jobs=1000-2
    pollrate_bench_test.go:253: poll rate, 1000 jobs
    pollrate_bench_test.go:259: windows: ours polls/s [98.4 99.9 103.8]
BenchmarkPollRate/jobs=100000-2       	       1	      9000 alloc-B/poll	       80 bare-cpu-us/req	      1666 bare-req/s	         0.9 cpu-ratio	        90 cpu-us/poll	      1500 heap-B/job	         0.9 lag-p50-ms	        20 lag-p99-ms	         0.0003 lag-p99/interval	      1667 polls/s	         1.0 rate-ratio	         1.0 ratio	      1900 rss-B/job	      1667 sched-polls/s	         1.2 bare-lag-p50-ms	        15 bare-lag-p99-ms
BenchmarkPollRate/jobs=10000-2        	       1	      9500 alloc-B/poll	       85 bare-cpu-us/req	       166 bare-req/s	         0.95 cpu-ratio	       100 cpu-us/poll	      3000 heap-B/job	         0.9 lag-p50-ms	        10 lag-p99-ms	         0.0002 lag-p99/interval	       167 polls/s	         1.0 rate-ratio	         1.0 ratio	      3500 rss-B/job	       167 sched-polls/s	         1.1 bare-lag-p50-ms	        12 bare-lag-p99-ms
PASS
ok  	github.com/jobbridge/jobbridge/pollers/registry	22.326s
pkg: github.com/jobbridge/jobbridge/bridge
BenchmarkPublishPath-2   	       1	 5000000000 ns/op	       670 bytes/event	     40000 events/s	         0.85 ratio	     47000 raw-events/s
--- BENCH: BenchmarkPublishPath-2
    publish_bench_test.go:170: publish path: ours 40000 events/s
pkg: github.com/jobbridge/jobbridge/notifiers/hmc
BenchmarkPushLatency/stomp-2         	completion -> JetStream ack, stomp           n=300  p50     1.000 ms   p99     2.000 ms   max     3.000 ms
       1	   1234 ns/op	         1.000 p50-ms	         2.000 p99-ms
BenchmarkPushRate/rate=1000-2        	       1	        92.51 bare-max-ms	         1.820 bare-p50-ms	        75.71 bare-p99-ms	        90.54 bare-p999-ms	       128.1 max-ms	         4.584 p50-ms	       101.4 p99-ms	         1.340 p99-ratio	       123.1 p999-ms	       998.0 sent/s
BenchmarkPushRate/rate=100-2         	       1	        21.93 bare-max-ms	         1.474 bare-p50-ms	        21.43 bare-p99-ms	        21.93 bare-p999-ms	        80.11 max-ms	         1.752 p50-ms	        7.86 p99-ms	         3.307 p99-ratio	        80.11 p999-ms	        94.46 sent/s
--- FAIL: BenchmarkStartup/jobs=100
FAIL	github.com/jobbridge/jobbridge/bridge	1.0s
`

func TestParse(t *testing.T) {
	run, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(run.Results), 7; got != want {
		t.Fatalf("%d results, want %d: %+v", got, want, run.Results)
	}
	r := run.Results[0]
	if r.Base != "BenchmarkPollRate" || r.Sub != "jobs=1000" || r.Procs != 2 || r.Iters != 1 || r.Pkg != "github.com/jobbridge/jobbridge/pollers/registry" {
		t.Fatalf("first result %+v", r)
	}
	if x, ok := r.Param("jobs"); !ok || x != 1000 {
		t.Fatalf("jobs param %v %v", x, ok)
	}
	if v, ok := r.Metric("lag-p99/interval"); !ok || v != 0.02235 {
		t.Fatalf("lag-p99/interval = %v %v", v, ok)
	}
	if len(r.Logs) != 2 || !strings.HasPrefix(r.Logs[1], "pollrate_bench_test.go:259") {
		t.Fatalf("logs %q", r.Logs)
	}
	if run.Env["cpu"] != "Intel(R) Xeon(R) Processor @ 2.80GHz" || run.Env["goos"] != "linux" {
		t.Fatalf("env %v", run.Env)
	}
	// The name broken by a benchmark's own output is joined to its figures.
	push := run.Family("BenchmarkPushLatency")
	if len(push) != 1 || push[0].Sub != "stomp" || push[0].Metrics["p99-ms"] != 2 || push[0].Pkg != "github.com/jobbridge/jobbridge/notifiers/hmc" {
		t.Fatalf("broken line: %+v", push)
	}
	if pub := run.Family("BenchmarkPublishPath"); len(pub) != 1 || pub[0].Sub != "" || pub[0].Metrics["ratio"] != 0.85 {
		t.Fatalf("publish: %+v", pub)
	}
	if len(run.Failures) != 2 {
		t.Fatalf("failures %q", run.Failures)
	}
	if got := strings.Join(run.Bases(), ","); got != "BenchmarkPollRate,BenchmarkPublishPath,BenchmarkPushLatency,BenchmarkPushRate" {
		t.Fatalf("bases %s", got)
	}
}

func TestParseRejectsOddFields(t *testing.T) {
	run, err := Parse(strings.NewReader("BenchmarkX-2   1   12 ns/op   7\nBenchmarkY-2 1 3.5 x/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Results) != 1 || run.Results[0].Base != "BenchmarkY" || run.Results[0].Metrics["x/op"] != 3.5 {
		t.Fatalf("results %+v", run.Results)
	}
}

func TestSeriesSortedByParam(t *testing.T) {
	run, _ := Parse(strings.NewReader(sample))
	pts := series(run, "BenchmarkPollRate", "jobs", "rss-B/job")
	want := []Point{{1000, 13689}, {10000, 3500}, {100000, 1900}}
	if len(pts) != len(want) {
		t.Fatalf("points %v", pts)
	}
	for i := range want {
		if pts[i] != want[i] {
			t.Fatalf("points %v, want %v", pts, want)
		}
	}
}

// wellFormed parses an SVG document to its end and counts elements.
func wellFormed(t *testing.T, doc string) map[string]int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	counts := map[string]int{}
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("root namespace %q", se.Name.Space)
				}
			}
			counts[se.Name.Local]++
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	return counts
}

func TestLineChartSVG(t *testing.T) {
	c := LineChart{Title: "Lag <p99> & more", XLabel: "jobs", YLabel: "ms", LogX: true, LogY: true, Series: []Series{
		{Name: "bridge", Points: []Point{{1000, 5}, {10000, 7}, {100000, 30}}},
		{Name: "bare", Points: []Point{{1000, 4}, {10000, 0}, {100000, math.NaN()}}}, // unusable on a log axis: left out
		{Name: "target", Points: []Point{{1000, 10}, {100000, 10}}, Dashed: true},
	}}
	doc := c.SVG()
	n := wellFormed(t, doc)
	if n["polyline"] != 3 || n["circle"] != 3+1 {
		t.Fatalf("elements %v", n)
	}
	if !strings.Contains(doc, "Lag &lt;p99&gt; &amp; more") {
		t.Fatal("title not escaped")
	}
	for _, tick := range []string{">1000<", ">10k<", ">100k<"} {
		if !strings.Contains(doc, tick) {
			t.Fatalf("x tick %s missing", tick)
		}
	}
	// Larger values are drawn higher: smaller y in SVG coordinates.
	if !strings.Contains(doc, "stroke-dasharray") {
		t.Fatal("dashed reference line missing")
	}
}

func TestLinearAxisTicksCoverData(t *testing.T) {
	a := newAxis(0, 13689, false, true)
	if a.lo != 0 || a.hi < 13689 || len(a.ticks) < 3 || len(a.ticks) > 12 {
		t.Fatalf("axis %+v", a)
	}
	if f := a.frac(13689); f <= 0.5 || f > 1 {
		t.Fatalf("frac %v", f)
	}
	l := newAxis(3, 250, true, false)
	if l.lo != 1 || l.hi != 1000 || len(l.ticks) != 4 {
		t.Fatalf("log axis %+v", l)
	}
}

func TestBarChartSVG(t *testing.T) {
	c := BarChart{Title: "Publish", YLabel: "events/s", Categories: []string{"a", "b"}, Series: []BarSeries{
		{Name: "bridge", Values: []float64{40000, math.NaN()}},
		{Name: "raw", Values: []float64{47000, 50000}},
	}}
	n := wellFormed(t, c.SVG())
	if n["rect"] != 1+3 { // background + 3 bars
		t.Fatalf("elements %v", n)
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1000: "1000", 10000: "10k", 100000: "100k", 1.5e6: "1.5M", 0.5: "0.5", 2048: "2048", 12.5: "12.5"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteReport(t *testing.T) {
	in := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "profile-poll-cpu.txt"), []byte("flat  flat%\n 1s 50% runtime.mallocgc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := run([]string{"-in", in, "-out", out, "-cond", "load 3.2"}, &stdout); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	report := string(md)
	for _, want := range []string{
		"## Headline figures",
		"| poll path at the scheduled rate, bridge / bare polls/s | jobs=1000 | 1.00 | ≥ 0.7 |",
		"| bridge resident memory per watched job (B) | jobs=100000 | 1900 | ≤ 2048 | zero watches | yes |",
		"| push path p99 (ms) | rate=1000 | 101.4 | < 10 | — | no |",
		"| publish path, bridge / raw JetStream async events/s | — | 0.85 | ≥ 0.8 |",
		"![Resident memory per watched job](poll-memory.svg)",
		"![Push path latency against completion rate](push-latency.svg)",
		"![Publish path throughput](publish.svg)",
		"| jobs=100000 |",
		"- load 3.2",
		"runtime.mallocgc",
		"BenchmarkStartup/jobs=100",
		"### BenchmarkPushLatency",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "ns/op") {
		t.Error("a table shows ns/op")
	}
	// Startup has no data in the sample: no plot for it.
	if strings.Contains(report, "startup.svg") {
		t.Error("a plot without data was referenced")
	}
	for _, f := range []string{"poll-memory.svg", "poll-cpu.svg", "poll-lag.svg", "poll-rate.svg", "push-latency.svg", "publish.svg"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, string(b))
	}
	if _, err := os.Stat(filepath.Join(out, "startup.svg")); !os.IsNotExist(err) {
		t.Fatalf("startup.svg written without data: %v", err)
	}
}

func TestRunWithoutResultsFails(t *testing.T) {
	in := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(in, []byte("FAIL\tgithub.com/x\t1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-in", in, "-out", t.TempDir()}, io.Discard); err == nil {
		t.Fatal("no error for output without results")
	}
}

package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/arcgis/arcgissim"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/helix/helixsim"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/hmc/hmcsim"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/huawei/huaweisim"
	"github.com/jobbridge/jobbridge/pollers/tso"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
)

// The benchmark's credentials, resolved through Deps.Env as a deployment
// would resolve them.
const (
	benchUser   = "bench"
	benchPWEnv  = "BENCH_PASSWORD"
	benchPW     = "Bench-Pa55word"
	benchKeyID  = "bench-access-key"
	benchKeyEnv = "BENCH_SECRET_KEY"
)

func benchEnv(name string) (string, bool) {
	switch name {
	case benchPWEnv, benchKeyEnv:
		return benchPW, true
	}
	return "", false
}

// simRig is one simulator holding jobs in a steady running state and the
// configuration of the bridge instance that polls it.
type simRig struct {
	vendor string
	inst   config.Instance
	ids    []string
	close  func()
}

func benchInstance(vendor, url string, concurrency int) config.Instance {
	in := config.DefaultInstance()
	in.Name, in.Vendor, in.URL = "bench", vendor, url
	in.Concurrency = concurrency
	in.Interval = config.Duration(time.Millisecond)
	return in
}

func password() config.SecretRef { return config.SecretRef{Env: benchPWEnv} }

func startTSO(n, concurrency int) *simRig {
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{benchUser: benchPW}})
	r := &simRig{vendor: tso.Vendor, close: sim.Close}
	for i := range n {
		id := fmt.Sprintf("bench-tso-%06d", i)
		sim.AddJob(id, []tsosim.Step{{Status: "ASSIGNED"}})
		r.ids = append(r.ids, id)
	}
	r.inst = benchInstance(tso.Vendor, sim.URL, concurrency)
	r.inst.Auth = config.Auth{Username: benchUser, Password: password()}
	return r
}

func startHelix(n, concurrency int) *simRig {
	sim := helixsim.NewServer(helixsim.Options{AccessKeys: []helixsim.AccessKey{{ID: benchKeyID, Secret: benchPW}}})
	r := &simRig{vendor: helix.Vendor, close: sim.Close}
	for i := range n {
		id := 100000 + i
		// One run that outlasts the benchmark: RUNNING from creation on.
		sim.MustAddETL(helixsim.ETL{ID: id, Runs: []helixsim.Run{{At: 0, For: 240 * time.Hour}}})
		r.ids = append(r.ids, strconv.Itoa(id))
	}
	r.inst = benchInstance(helix.Vendor, sim.URL, concurrency)
	r.inst.Auth = config.Auth{AccessKey: benchKeyID, SecretKey: config.SecretRef{Env: benchKeyEnv}}
	return r
}

func startArcGIS(n, concurrency int) *simRig {
	sim := arcgissim.NewServer(arcgissim.Options{Users: map[string]string{benchUser: benchPW}})
	r := &simRig{vendor: arcgis.Vendor, close: sim.Close}
	for i := range n {
		id := fmt.Sprintf("bench%06dmission", i)
		sim.MustAddJob(arcgissim.Job{ID: id, Kind: arcgissim.KindMission, TotalSteps: 5,
			Script: []arcgissim.Step{{Status: "EXECUTING", Done: 1, Message: "Created tracks layers for location awareness."}}})
		r.ids = append(r.ids, id)
	}
	r.inst = benchInstance(arcgis.Vendor, sim.MissionURL(), concurrency)
	r.inst.Auth = config.Auth{Username: benchUser, Password: password()}
	r.inst.Options = map[string]any{"flavor": "mission", "tokenURL": sim.PortalTokenURL()}
	return r
}

func startHMC(n, concurrency int) *simRig {
	sim := hmcsim.NewServer(hmcsim.Options{Users: map[string]string{benchUser: benchPW}})
	r := &simRig{vendor: hmc.Vendor, close: sim.Close}
	for i := range n {
		id := fmt.Sprintf("bench-hmc-%06d", i)
		if _, err := sim.AddJob(hmcsim.Job{ID: id, Script: []hmcsim.Step{{Status: hmcsim.StatusRunning}}}); err != nil {
			panic(err)
		}
		r.ids = append(r.ids, id)
	}
	r.inst = benchInstance(hmc.Vendor, sim.URL, concurrency)
	r.inst.Auth = config.Auth{Username: benchUser, Password: password()}
	return r
}

func startHuawei(n, concurrency int) *simRig {
	sim := huaweisim.NewServer(huaweisim.Options{Users: map[string]string{benchUser: benchPW}})
	r := &simRig{vendor: huawei.Vendor, close: sim.Close}
	hold := []huaweisim.Step{{Status: "RUNNING"}}
	for i := range n {
		id := fmt.Sprintf("JOB%06dbench", i)
		// One task, so the task path is on the poll path too, on one page.
		sim.AddJob(huaweisim.Job{ID: id, Script: hold, Tasks: []huaweisim.Task{{ID: "T1", Script: hold}}})
		r.ids = append(r.ids, id)
	}
	r.inst = benchInstance(huawei.Vendor, sim.URL, concurrency)
	r.inst.Auth = config.Auth{Username: benchUser, Password: password(), Domain: huaweisim.DefaultDomain, Project: sim.ProjectID()}
	r.inst.Options = map[string]any{"iamURL": sim.URL}
	return r
}

// recorded is one status request as a poller sent it.
type recorded struct {
	host   string
	url    string
	header http.Header
}

// recorder wraps every vendor client's transport: it counts round trips,
// can hold them at a gate (which parks the bridge's workers without CPU,
// so the bare client has the simulators to itself), and, while recording,
// remembers per URL path the last GET the pollers sent. Log-ins are POSTs
// on every vendor here, so they are never recorded. Recording is off in the
// measured windows: it would bill a map insert and a header clone to ours.
type recorder struct {
	requests  atomic.Int64
	recording atomic.Bool
	gate      atomic.Pointer[chan struct{}]

	mu   sync.Mutex
	last map[string]recorded
}

func newRecorder() *recorder { return &recorder{last: make(map[string]recorded)} }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (rec *recorder) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if g := rec.gate.Load(); g != nil {
			select {
			case <-*g:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
		}
		if req.Method == http.MethodGet && rec.recording.Load() {
			r := recorded{host: req.URL.Host, url: req.URL.String(), header: req.Header.Clone()}
			rec.mu.Lock()
			rec.last[req.URL.EscapedPath()] = r
			rec.mu.Unlock()
		}
		resp, err := next.RoundTrip(req)
		if err == nil {
			rec.requests.Add(1)
		}
		return resp, err
	})
}

// pause holds every request from now on at the gate; resume lets them go.
func (rec *recorder) pause() {
	g := make(chan struct{})
	rec.gate.Store(&g)
}

func (rec *recorder) resume() {
	if g := rec.gate.Swap(nil); g != nil {
		close(*g)
	}
}

// statusRequests returns the recorded GETs of a rig's jobs, in job order,
// and how many of its jobs have none yet. A recorded path belongs to a job
// when one of its segments is the job id.
func (rec *recorder) statusRequests(r *simRig) ([]recorded, int) {
	host := ""
	if u, err := url.Parse(r.inst.URL); err == nil {
		host = u.Host
	}
	want := make(map[string]int, len(r.ids))
	for i, id := range r.ids {
		want[id] = i
	}
	byJob := make([]*recorded, len(r.ids))
	rec.mu.Lock()
	for path, x := range rec.last {
		if x.host != host {
			continue
		}
		for _, seg := range strings.Split(path, "/") {
			s, err := url.PathUnescape(seg)
			if err != nil {
				continue
			}
			if i, ok := want[s]; ok {
				byJob[i] = &x
				break
			}
		}
	}
	rec.mu.Unlock()
	var out []recorded
	missing := 0
	for _, x := range byJob {
		if x == nil {
			missing++
			continue
		}
		out = append(out, *x)
	}
	return out, missing
}

// bareClient replays recorded status GETs with nothing but net/http: per
// simulator its own Transport (MaxIdleConnsPerHost = the instance's
// concurrency, as pollkit sets it) and as many goroutines as the bridge
// allows in flight to that instance, each walking its share of the jobs
// round-robin and reading every body to the end.
type bareClient struct {
	hosts []bareHost
	count atomic.Int64
	fails atomic.Int64
}

type bareHost struct {
	client      *http.Client
	reqs        []recorded
	concurrency int
}

func newBareClient() *bareClient { return &bareClient{} }

func (bc *bareClient) addHost(reqs []recorded, concurrency int) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	bc.hosts = append(bc.hosts, bareHost{client: &http.Client{Transport: tr}, reqs: reqs, concurrency: concurrency})
}

// run polls until stop is set; it lets requests in flight finish, so no
// connection is torn down between windows.
func (bc *bareClient) run(stop *atomic.Bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, h := range bc.hosts {
		for g := range h.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; !stop.Load(); i += h.concurrency {
					x := h.reqs[i%len(h.reqs)]
					req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, x.url, nil)
					if err != nil {
						bc.fails.Add(1)
						return
					}
					req.Header = x.header.Clone()
					resp, err := h.client.Do(req)
					if err != nil {
						bc.fails.Add(1)
						continue
					}
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						bc.fails.Add(1)
					}
					bc.count.Add(1)
				}
			}()
		}
	}
	return &wg
}

func (bc *bareClient) closeIdle() {
	for _, h := range bc.hosts {
		h.client.CloseIdleConnections()
	}
}

// rssBytes reads the resident set size from /proc/self/statm.
func rssBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

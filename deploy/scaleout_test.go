package deploy

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats.go"
	"gopkg.in/yaml.v3"
)

// TestAccountsConfAllowsScaleOut runs two scale-out replicas as user
// jobbridge of accounts.conf: leases, heartbeats and the hints passed
// between replicas need no permission the file does not grant.
func TestAccountsConfAllowsScaleOut(t *testing.T) {
	srv := startAccountsServer(t)
	var mu sync.Mutex
	var violations []string
	p := bridgetest.NewPoller()
	p.Set("7", bridge.StateRunning, "Running")
	var hs []*bridgetest.Harness
	for _, id := range []string{"r1", "r2"} {
		nc := natstest.Connect(t, srv, nats.UserInfo("jobbridge", "bridge-pw"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
		hs = append(hs, bridgetest.StartBridge(t, nc, []bridge.Instance{{Vendor: "fake", Name: "lab", Poller: p}}, func(o *bridge.Options) {
			o.Cluster = bridge.ClusterOptions{Enabled: true, ReplicaID: id, Shards: 4, LeaseTTL: 2 * time.Second}
		}))
	}
	bridgetest.WaitFor(t, 30*time.Second, "the replicas share the shards", func() bool {
		return len(hs[0].Bridge.OwnedShards()) == 2 && len(hs[1].Bridge.OwnedShards()) == 2
	})
	hs[0].Watch("fake", "lab", "7")
	hs[0].WaitEvents("7", 1, 20*time.Second)
	// A hint on the replica that does not poll the job is passed on.
	for _, h := range hs {
		if !h.Bridge.Hint(bridge.JobRef{Vendor: "fake", Instance: "lab", ID: "7"}) {
			t.Error("a hint for a watched job reports it unwatched")
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, h := range hs {
		h.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Errorf("scale-out replicas hit permission errors: %v", violations)
	}
}

// TestReplicasOverlay checks the scale-out overlay: it builds on the base
// and turns scale-out on with a replica ID per pod.
func TestReplicasOverlay(t *testing.T) {
	dir := "kubernetes/replicas"
	var k struct {
		Resources []string `yaml:"resources"`
		Patches   []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Resources) != 1 || k.Resources[0] != "../base" {
		t.Errorf("resources %v, want [../base]", k.Resources)
	}
	var dep struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					Containers []struct {
						Name string `yaml:"name"`
						Env  []struct {
							Name      string `yaml:"name"`
							Value     string `yaml:"value"`
							ValueFrom *struct {
								FieldRef struct {
									FieldPath string `yaml:"fieldPath"`
								} `yaml:"fieldRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	found := false
	for _, p := range k.Patches {
		b, err := os.ReadFile(filepath.Join(dir, p.Path))
		if err != nil {
			t.Fatalf("patch %s: %v", p.Path, err)
		}
		if err := yaml.Unmarshal(b, &dep); err != nil {
			t.Fatalf("patch %s: %v", p.Path, err)
		}
		if dep.Kind != "Deployment" {
			continue
		}
		found = true
		if dep.Spec.Replicas < 2 {
			t.Errorf("replicas %d", dep.Spec.Replicas)
		}
		env := map[string]string{}
		for _, c := range dep.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				env[e.Name] = e.Value
				if e.ValueFrom != nil {
					env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
				}
			}
		}
		if env["JOBBRIDGE_CLUSTER_ENABLED"] != "true" || env["JOBBRIDGE_CLUSTER_REPLICAID"] != "fieldRef:metadata.name" {
			t.Errorf("the overlay must set JOBBRIDGE_CLUSTER_ENABLED=true and the replica ID from the pod name: %v", env)
		}
	}
	if !found {
		t.Error("no Deployment patch in the overlay")
	}
}

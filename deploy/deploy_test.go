// Package deploy holds no code: it tests the deployment files beside it
// (container image, Kubernetes base, systemd unit, NATS definitions) so
// that they stay valid and agree with the code they deploy.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

const (
	kustomizeDir = "kubernetes/base"
	streamFile   = "nats/stream-JOBS.json"
	setupScript  = "nats/setup.sh"
	accountsFile = "nats/accounts.conf"
	fakeNATSEnv  = "JOBBRIDGE_TEST_FAKE_NATS_URL"
)

// TestMain lets the test binary stand in for the nats CLI when setup.sh
// runs it (see fakeNATS).
func TestMain(m *testing.M) {
	if url := os.Getenv(fakeNATSEnv); url != "" {
		os.Exit(fakeNATS(url, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestEveryFileParses reads every YAML document and JSON file under deploy/.
func TestEveryFileParses(t *testing.T) {
	var yamlFiles, jsonFiles int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "node_modules" {
				return filepath.SkipDir // installed packages, not ours
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			yamlFiles++
			n, err := yamlDocs(path, func(*yaml.Node) error { return nil })
			if err != nil {
				t.Errorf("%s: %v", path, err)
			} else if n == 0 {
				t.Errorf("%s: no YAML document", path)
			}
		case ".json":
			jsonFiles++
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if yamlFiles < 8 || jsonFiles < 3 {
		t.Errorf("found %d YAML and %d JSON files; the walk missed the deploy tree", yamlFiles, jsonFiles)
	}
}

// yamlDocs calls f for every non-empty document of a (multi-document) file.
func yamlDocs(path string, f func(*yaml.Node) error) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	n := 0
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("document %d: %w", n+1, err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue
		}
		n++
		if err := f(&doc); err != nil {
			return n, fmt.Errorf("document %d: %w", n, err)
		}
	}
}

// Just enough of the Kubernetes objects to check that they agree.
type (
	kustomization struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Patches []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
	}
	object struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec yaml.Node `yaml:"spec"`
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	deploymentSpec struct {
		Replicas int           `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string `yaml:"name"`
					Image string `yaml:"image"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Env []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							SecretKeyRef *struct {
								Name string `yaml:"name"`
								Key  string `yaml:"key"`
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					LivenessProbe   *probe                                       `yaml:"livenessProbe"`
					ReadinessProbe  *probe                                       `yaml:"readinessProbe"`
					Resources       struct{ Requests, Limits map[string]string } `yaml:"resources"`
					SecurityContext struct {
						RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
						ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					EmptyDir *yaml.Node `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
)

func readKustomization(t *testing.T) (kustomization, map[string]object) {
	t.Helper()
	var k kustomization
	b, err := os.ReadFile(filepath.Join(kustomizeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	byKind := map[string]object{}
	for _, r := range k.Resources {
		path := filepath.Join(kustomizeDir, r)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("kustomization lists %s: %v", r, err)
			continue
		}
		_, err := yamlDocs(path, func(n *yaml.Node) error {
			var o object
			if err := n.Decode(&o); err != nil {
				return err
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				return fmt.Errorf("apiVersion, kind and metadata.name are required")
			}
			byKind[o.Kind] = o
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", r, err)
		}
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, file, ok := strings.Cut(f, "="); ok {
				f = file
			}
			if _, err := os.Stat(filepath.Join(kustomizeDir, f)); err != nil {
				t.Errorf("configMapGenerator %s lists %s: %v", g.Name, f, err)
			}
		}
	}
	for _, p := range k.Patches {
		if p.Path != "" {
			if _, err := os.Stat(filepath.Join(kustomizeDir, p.Path)); err != nil {
				t.Errorf("patch %s: %v", p.Path, err)
			}
		}
	}
	return k, byKind
}

// TestKustomizeBase checks that the base lists files that exist and that
// its objects agree with each other, with the image and with the config.
func TestKustomizeBase(t *testing.T) {
	k, objs := readKustomization(t)
	for _, kind := range []string{"Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget", "ServiceAccount"} {
		if _, ok := objs[kind]; !ok {
			t.Errorf("the base has no %s", kind)
		}
	}
	var d deploymentSpec
	dep := objs["Deployment"]
	if err := dep.Spec.Decode(&d); err != nil {
		t.Fatalf("Deployment spec: %v", err)
	}
	if len(d.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(d.Template.Spec.Containers))
	}
	c := d.Template.Spec.Containers[0]
	pod := d.Template.Metadata.Labels
	subset := func(sel map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if pod[k] != v {
				return false
			}
		}
		return true
	}
	if !subset(d.Selector.MatchLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", d.Selector.MatchLabels, pod)
	}
	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	if s := objs["Service"]; s.Spec.Kind != 0 {
		if err := s.Spec.Decode(&svc); err != nil {
			t.Fatal(err)
		}
		if !subset(svc.Selector) {
			t.Errorf("Service selector %v does not select the pods %v", svc.Selector, pod)
		}
	}
	var pdb struct {
		Selector labelSelector `yaml:"selector"`
	}
	if p := objs["PodDisruptionBudget"]; p.Spec.Kind != 0 {
		_ = p.Spec.Decode(&pdb)
		if !subset(pdb.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selector %v does not select the pods", pdb.Selector.MatchLabels)
		}
	}
	var sm struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	}
	if m := objs["ServiceMonitor"]; m.Spec.Kind != 0 {
		_ = m.Spec.Decode(&sm)
		svcLabels := objs["Service"].Metadata.Labels
		for k, v := range sm.Selector.MatchLabels {
			if svcLabels[k] != v {
				t.Errorf("ServiceMonitor selector %s=%s does not select the Service (labels %v)", k, v, svcLabels)
			}
		}
		if len(sm.Endpoints) != 1 || sm.Endpoints[0].Path != "/metrics" || len(svc.Ports) == 0 || sm.Endpoints[0].Port != svc.Ports[0].Name {
			t.Errorf("ServiceMonitor endpoints %+v: want /metrics on the Service's port %+v", sm.Endpoints, svc.Ports)
		}
	}

	// Probes, hardening, resources.
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe must GET /healthz: %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe must GET /readyz: %+v", c.ReadinessProbe)
	}
	if !d.Template.Spec.SecurityContext.RunAsNonRoot || !c.SecurityContext.RunAsNonRoot || !c.SecurityContext.ReadOnlyRootFilesystem ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container must run as non-root, read-only root, no privilege escalation: %+v", c.SecurityContext)
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("memory request and limit are required: %+v", c.Resources)
	}
	if d.Replicas != 1 {
		t.Errorf("replicas %d: replicas do not share the work yet, so more than one would poll every job twice", d.Replicas)
	}

	// The config: mounted where the image's entrypoint reads it, valid, and
	// every secret it names comes from the Deployment's env.
	var cfgFile string
	for _, g := range k.ConfigMapGenerator {
		if slices.Contains(g.Files, "config.yaml") {
			cfgFile = filepath.Join(kustomizeDir, "config.yaml")
			var mounted bool
			for _, v := range d.Template.Spec.Volumes {
				if v.ConfigMap != nil && v.ConfigMap.Name == g.Name {
					for _, m := range c.VolumeMounts {
						if m.Name == v.Name && m.MountPath+"/config.yaml" == entrypointConfig(t) {
							mounted = true
						}
					}
				}
			}
			if !mounted {
				t.Errorf("ConfigMap %s is not mounted so that %s is the image's config file", g.Name, entrypointConfig(t))
			}
		}
	}
	if cfgFile == "" {
		t.Fatal("no configMapGenerator holds config.yaml")
	}
	envNames := map[string]bool{}
	for _, e := range c.Env {
		envNames[e.Name] = true
		if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Name == "" || r.Key == "") {
			t.Errorf("env %s: secretKeyRef needs name and key", e.Name)
		}
	}
	data, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, warns, err := config.Parse(cfgFile, data, func(name string) (string, bool) {
		if envNames[name] {
			return "placeholder-" + name, true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("%s with the Deployment's env: %v", cfgFile, err)
	}
	if len(warns) > 0 {
		t.Errorf("%s warnings: %v", cfgFile, warns)
	}
	if !strings.HasSuffix(cfg.HTTP.Listen, fmt.Sprintf(":%d", c.Ports[0].ContainerPort)) || strings.HasPrefix(cfg.HTTP.Listen, "127.") {
		t.Errorf("http.listen %q must be reachable on the container port %d", cfg.HTTP.Listen, c.Ports[0].ContainerPort)
	}
	var dataMounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == cfg.DataDir {
			dataMounted = true
		}
	}
	if !dataMounted {
		t.Errorf("dataDir %s is not a mounted volume: the root file system is read-only", cfg.DataDir)
	}
}

// entrypointConfig is the --config path in the Dockerfile's ENTRYPOINT.
func entrypointConfig(t *testing.T) string {
	t.Helper()
	ep := dockerfileEntrypoint(t)
	i := slices.Index(ep, "--config")
	if i < 0 || i+1 >= len(ep) {
		t.Fatalf("ENTRYPOINT %q has no --config", ep)
	}
	return ep[i+1]
}

// dockerfile returns the instructions of deploy/Dockerfile, continuation
// lines joined, comments dropped.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		ins, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, [2]string{strings.ToUpper(ins), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func dockerfileEntrypoint(t *testing.T) []string {
	t.Helper()
	var ep []string
	for _, ins := range dockerfile(t) {
		if ins[0] == "ENTRYPOINT" {
			if err := json.Unmarshal([]byte(ins[1]), &ep); err != nil {
				t.Fatalf("ENTRYPOINT must be exec form (a JSON array: the image has no shell): %v", err)
			}
		}
	}
	return ep
}

func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	var froms []string
	var user, build string
	for _, i := range ins {
		switch i[0] {
		case "FROM":
			froms = append(froms, i[1])
			user = "" // USER is per stage
		case "USER":
			user = i[1]
		case "RUN":
			if strings.Contains(i[1], "go build") {
				build = i[1]
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, have FROM %v", froms)
	}
	final := froms[len(froms)-1]
	if !strings.Contains(final, "distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless static or scratch", final)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("final stage runs as %q: want a non-root USER", user)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/jobbridge") {
		t.Errorf("build step %q: want a static (CGO_ENABLED=0) build of ./cmd/jobbridge", build)
	}
	if _, err := os.Stat(filepath.Join("..", "cmd", "jobbridge", "main.go")); err != nil {
		t.Errorf("the Dockerfile builds ./cmd/jobbridge: %v", err)
	}
	ep := dockerfileEntrypoint(t)
	if want := []string{"/usr/local/bin/jobbridge", "run", "--config", "/etc/jobbridge/config.yaml"}; !slices.Equal(ep, want) {
		t.Errorf("ENTRYPOINT %q, want %q", ep, want)
	}
}

func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/jobbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("not a key=value line in %s: %q", section, line)
			continue
		}
		set[section+k] = append(set[section+k], v)
	}
	for k, want := range map[string]string{
		"[Service]NoNewPrivileges": "yes",
		"[Service]ProtectSystem":   "strict",
		"[Service]StateDirectory":  "jobbridge",
		"[Service]DynamicUser":     "yes",
		"[Install]WantedBy":        "multi-user.target",
	} {
		if !slices.Contains(set[k], want) {
			t.Errorf("%s=%s is required, have %q", k, want, set[k])
		}
	}
	if len(set["[Service]EnvironmentFile"]) == 0 {
		t.Error("secrets come from an EnvironmentFile; none is set")
	}
	exec := strings.Join(set["[Service]ExecStart"], "")
	if !strings.Contains(exec, "jobbridge run --config ") {
		t.Errorf("ExecStart %q does not run the bridge with a config file", exec)
	}
}

// bridgeStream is the stream and bucket configuration a bridge with default
// options creates (stream.manage: true), read back from a server.
func bridgeStream(t *testing.T) (jetstream.StreamConfig, map[string]jetstream.StreamConfig) {
	t.Helper()
	srv := natstest.RunServer(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// New alone creates the stream and buckets (the lease bucket because
	// scale-out is on); nothing runs until Run.
	if _, err := bridge.New(ctx, bridge.Options{Conn: nc, Stream: bridge.StreamOptions{Manage: true, Storage: jetstream.FileStorage},
		Cluster: bridge.ClusterOptions{Enabled: true, ReplicaID: "deploy-test"}}); err != nil {
		t.Fatalf("bridge.New with default stream options: %v", err)
	}
	js, _ := jetstream.New(nc)
	return streamConfig(t, js, "JOBS"), map[string]jetstream.StreamConfig{
		"JOBBRIDGE_STATE":   streamConfig(t, js, "KV_JOBBRIDGE_STATE"),
		"JOBBRIDGE_WATCHES": streamConfig(t, js, "KV_JOBBRIDGE_WATCHES"),
		"JOBBRIDGE_LEASES":  streamConfig(t, js, "KV_JOBBRIDGE_LEASES"),
	}
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Config
}

// sameStream compares what the bridge and deploy/nats decide; fields the
// server fills in (limits of -1, placement) are left out.
func sameStream(t *testing.T, what string, got, want jetstream.StreamConfig) {
	t.Helper()
	type view struct {
		Name, Description    string
		Subjects             []string
		Retention            jetstream.RetentionPolicy
		Discard              jetstream.DiscardPolicy
		Storage              jetstream.StorageType
		Replicas             int
		MaxAge, Duplicates   time.Duration
		MaxMsgsPerSubject    int64
		AllowRollup, DenyDel bool
	}
	v := func(c jetstream.StreamConfig) view {
		return view{c.Name, c.Description, c.Subjects, c.Retention, c.Discard, c.Storage, c.Replicas, c.MaxAge, c.Duplicates,
			c.MaxMsgsPerSubject, c.AllowRollup, c.DenyDelete}
	}
	if g, w := v(got), v(want); fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func readStreamJSON(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	b, err := os.ReadFile(streamFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg jetstream.StreamConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt key would silently keep a server default
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", streamFile, err)
	}
	return cfg
}

// TestStreamJSONMatchesTheBridge: the stream a NATS operator creates from
// deploy/nats is the one the bridge would create itself.
func TestStreamJSONMatchesTheBridge(t *testing.T) {
	cfg := readStreamJSON(t)
	def := config.Default().Stream
	if cfg.Name != "JOBS" || cfg.Name != def.Name {
		t.Errorf("name %q, want JOBS (config default %q)", cfg.Name, def.Name)
	}
	if !slices.Equal(cfg.Subjects, []string{"jobs.>"}) || def.SubjectPrefix+".>" != "jobs.>" {
		t.Errorf("subjects %q, want [jobs.>] (config default prefix %q)", cfg.Subjects, def.SubjectPrefix)
	}
	if cfg.Duplicates != 2*time.Minute || cfg.Duplicates != def.DuplicateWindow.Std() {
		t.Errorf("duplicate window %s, want 2m (config default %s)", cfg.Duplicates, def.DuplicateWindow)
	}
	if cfg.MaxAge != 168*time.Hour || cfg.MaxAge != def.MaxAge.Std() {
		t.Errorf("max age %s, want 168h (config default %s)", cfg.MaxAge, def.MaxAge)
	}
	if cfg.Retention != jetstream.LimitsPolicy || cfg.Storage != jetstream.FileStorage {
		t.Errorf("retention %v, storage %v: want limits and file", cfg.Retention, cfg.Storage)
	}
	managed, _ := bridgeStream(t)
	sameStream(t, "stream-JOBS.json vs the stream bridge.New creates", cfg, managed)
}

// TestSetupScriptPreparesAnUnmanagedBridge runs setup.sh (with this test
// binary as the nats CLI) against a server, then starts a bridge with
// stream.manage false on what it made: the bridge must find and use it, and
// what the script made must equal what the bridge would have made.
func TestSetupScriptPreparesAnUnmanagedBridge(t *testing.T) {
	srv := natstest.RunServer(t, natstest.Options{})
	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "nats")); err != nil {
		t.Fatal(err)
	}
	run := func(replicas string) (string, error) {
		cmd := exec.Command("sh", setupScript)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
			fakeNATSEnv+"="+srv.ClientURL(), "REPLICAS="+replicas)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("7"); err == nil || !strings.Contains(out, "REPLICAS must be 1 to 5") {
		t.Errorf("REPLICAS=7: err %v, output %q", err, out)
	}
	if out, err := run("1"); err != nil {
		t.Fatalf("setup.sh: %v\n%s", err, out)
	}
	out, err := run("1")
	if err != nil || strings.Count(out, "left unchanged") != 4 {
		t.Fatalf("a second run must leave the stream and all three buckets alone: %v\n%s", err, out)
	}

	nc := natstest.Connect(t, srv)
	js, _ := jetstream.New(nc)
	made := streamConfig(t, js, "JOBS")
	managed, buckets := bridgeStream(t)
	sameStream(t, "stream made by setup.sh vs the bridge's", made, managed)
	for name, want := range buckets {
		got := streamConfig(t, js, "KV_"+name)
		got.Description, want.Description = "", "" // the script describes its buckets
		sameStream(t, "bucket "+name+" made by setup.sh vs the bridge's", got, want)
		if got.MaxMsgsPerSubject != 1 {
			t.Errorf("bucket %s keeps %d values per key, want history 1", name, got.MaxMsgsPerSubject)
		}
	}

	// A scale-out replica, so the lease bucket the script made is used too.
	p := bridgetest.NewPoller()
	p.Set("42", bridge.StateSucceeded, "Completed")
	h := bridgetest.StartBridge(t, nc, []bridge.Instance{{Vendor: "fake", Name: "lab", Poller: p}},
		func(o *bridge.Options) {
			o.Stream.Manage = false
			o.Cluster = bridge.ClusterOptions{Enabled: true, ReplicaID: "unmanaged"}
		})
	h.Watch("fake", "lab", "42")
	if got := bridgetest.Summary(h.WaitEvents("42", 1, 10*time.Second)); !slices.Equal(got, []string{"transition:succeeded"}) {
		t.Errorf("events %v", got)
	}
}

// fakeNATS plays the part of the nats CLI commands setup.sh uses, with the
// flags natscli defines for them, against the server at url.
func fakeNATS(url string, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "fake nats: "+format+"\n", a...)
		return 1
	}
	if len(args) < 3 {
		return fail("want '<stream|kv> <info|add> NAME [flags]', got %q", args)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return fail("%v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	what, verb, name := args[0], args[1], args[2]
	fs := flag.NewFlagSet("nats "+what+" "+verb, flag.ContinueOnError)
	configFile := fs.String("config", "", "")
	history := fs.Uint("history", 1, "")
	storage := fs.String("storage", "file", "")
	replicas := fs.Int("replicas", 1, "")
	description := fs.String("description", "", "")
	if err := fs.Parse(args[3:]); err != nil || fs.NArg() > 0 {
		return fail("bad flags %q", args[3:])
	}
	switch what + " " + verb {
	case "stream info":
		if _, err := js.Stream(ctx, name); err != nil {
			return fail("%v", err)
		}
	case "kv info":
		if _, err := js.KeyValue(ctx, name); err != nil {
			return fail("%v", err)
		}
	case "stream add":
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return fail("%v", err)
		}
		var cfg jetstream.StreamConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fail("%s: %v", *configFile, err)
		}
		if cfg.Name != name {
			return fail("config names stream %q, argument %q", cfg.Name, name)
		}
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fail("%v", err)
		}
	case "kv add":
		st := jetstream.FileStorage
		if strings.HasPrefix(*storage, "m") {
			st = jetstream.MemoryStorage
		}
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: uint8(*history), Storage: st,
			Replicas: *replicas, Description: *description}); err != nil {
			return fail("%v", err)
		}
	default:
		return fail("setup.sh is not expected to run %q", args)
	}
	return 0
}

// startAccountsServer runs nats-server with deploy/nats/accounts.conf, its
// users' passwords set as the file expects them from the environment.
func startAccountsServer(t *testing.T) *server.Server {
	t.Helper()
	for k, v := range map[string]string{"JOBBRIDGE_NATS_PASSWORD": "bridge-pw", "JOBBRIDGE_READER_PASSWORD": "reader-pw", "APPS_NATS_PASSWORD": "app-pw"} {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(accountsFile)
	if err != nil {
		t.Fatalf("%s: %v", accountsFile, err)
	}
	// A random port and a store of the test's own, not the file's.
	opts.Port, opts.StoreDir = 0, t.TempDir()
	return natstest.StartServer(t, opts)
}

// TestAccountsConf starts nats-server with deploy/nats/accounts.conf and
// runs the real parties under their users: the bridge must work without a
// single permission error, readers must read the stream and nothing more,
// and the APPS account gets live events and the watch API.
func TestAccountsConf(t *testing.T) {
	srv := startAccountsServer(t)

	// Permission errors arrive asynchronously: collect them per user.
	var mu sync.Mutex
	violations := map[string][]string{}
	connect := func(user, pw string) *nats.Conn {
		nc := natstest.Connect(t, srv, nats.UserInfo(user, pw), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations[user] = append(violations[user], err.Error())
			mu.Unlock()
		}))
		return nc
	}
	bridgeNC := connect("jobbridge", "bridge-pw")
	p := bridgetest.NewPoller()
	p.Set("7", bridge.StatePending, "Queued")
	h := bridgetest.StartBridge(t, bridgeNC, []bridge.Instance{{Vendor: "fake", Name: "lab", Poller: p}}, nil)
	ws, err := bridge.StartWatchService(bridgeNC, "jobbridge-watch", "1.0.0", h.Bridge.Registry(), h.Bridge.CheckInstance)
	if err != nil {
		t.Fatalf("watch service as user jobbridge: %v", err)
	}
	t.Cleanup(func() { _ = ws.Stop() })

	// APPS: live events through the stream import, watches through the
	// service import.
	appNC := connect("app", "app-pw")
	live, err := appNC.SubscribeSync("jobs.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := appNC.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := (bridge.WatchClient{NC: appNC}).Add(ctx, bridge.Watch{Vendor: "fake", Instance: "lab", Job: "7"}); err != nil {
		t.Fatalf("watch API from the APPS account: %v", err)
	}
	m, err := live.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("APPS got no live event: %v", err)
	}
	if m.Header.Get("Content-Type") != bridge.StructuredMediaType {
		t.Errorf("live event headers %v", m.Header)
	}
	p.Set("7", bridge.StateSucceeded, "Completed")
	h.WaitEvents("7", 2, 10*time.Second)

	// A second bridge on the same state recovers from KV and the stream
	// under the same user (the first one stops first).
	h.Stop()
	h2 := bridgetest.StartBridge(t, bridgeNC, []bridge.Instance{{Vendor: "fake", Name: "lab", Poller: p}}, nil)
	h2.Stop()
	mu.Lock()
	if v := violations["jobbridge"]; len(v) > 0 {
		t.Errorf("the bridge hit permission errors: %v", v)
	}
	mu.Unlock()

	// reader: a durable pull consumer filtered to one job, acked and
	// deleted (what jobwait does), and an ordered consumer (consumer.js).
	readerNC := connect("reader", "reader-pw")
	rjs, _ := jetstream.New(readerNC)
	filters := bridge.Subjects{Prefix: "jobs"}.Filters("fake", "lab", "", "7")
	cons, err := rjs.CreateOrUpdateConsumer(ctx, "JOBS", jetstream.ConsumerConfig{Durable: "reader-test", FilterSubjects: filters,
		DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("reader: durable consumer: %v", err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		if err := msg.DoubleAck(ctx); err != nil {
			t.Errorf("reader: ack: %v", err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("reader fetched %d events, want 2 (%v)", n, batch.Error())
	}
	if err := rjs.DeleteConsumer(ctx, "JOBS", "reader-test"); err != nil {
		t.Errorf("reader: delete its consumer: %v", err)
	}
	ordered, err := rjs.OrderedConsumer(ctx, "JOBS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"jobs.>"}})
	if err != nil {
		t.Fatalf("reader: ordered consumer: %v", err)
	}
	if _, err := ordered.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Errorf("reader: ordered consumer read: %v", err)
	}

	mu.Lock()
	if v := violations["reader"]; len(v) > 0 {
		t.Errorf("the reader hit permission errors: %v", v)
	}
	mu.Unlock()

	// And nothing more for the reader: no publishing events, no admin.
	short, cancelShort := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShort()
	if err := readerNC.Publish("jobs.fake.lab.failed.7", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := rjs.DeleteStream(short, "JOBS"); err == nil {
		t.Error("reader deleted the stream")
	}
	bridgetest.WaitFor(t, 5*time.Second, "permission errors for the reader", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(violations["reader"]) >= 2
	})
	mu.Lock()
	got := strings.Join(violations["reader"], "\n")
	mu.Unlock()
	if !strings.Contains(got, `Publish to "jobs.fake.lab.failed.7"`) || !strings.Contains(got, "STREAM.DELETE") {
		t.Errorf("reader violations: %s", got)
	}
}

//go:build faults

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/pollers/tso/tsosim"
)

// embeddedDisk covers the embedded NATS server's store: a data directory
// that cannot be created must stop the bridge at start-up with a message
// that names it, and a disk that fills up under a running bridge must
// turn /readyz to 503 and hold the transitions until space returns, then
// publish them in order.
func (r *faultRig) embeddedDisk(t *testing.T) {
	t.Run("Unwritable", r.diskUnwritable)
	t.Run("Full", r.diskFull)
}

// diskUnwritable: we run as root, so permissions do not stop writes; a
// regular file where a directory must be does.
func (r *faultRig) diskUnwritable(t *testing.T) {
	cases := []struct {
		name, want string
		conf       func(dir, file string) bridgeConf
	}{
		{"dataDir is a file", "data directory", func(dir, file string) bridgeConf {
			return bridgeConf{dir: file}
		}},
		{"embedded store dir is a file", "store directory", func(dir, file string) bridgeConf {
			return bridgeConf{dir: dir, storeDir: filepath.Join(file, "nats")}
		}},
	}
	t.Setenv("TSO_PASSWORD", tsoPassword)
	for _, c := range cases {
		dir := t.TempDir()
		file := filepath.Join(dir, "not-a-directory")
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		bc := c.conf(dir, file)
		bc.instances = tsoInstance("prod", "http://127.0.0.1:1/baocdp", []string{"j"}, "")
		cfgDir := t.TempDir()
		cfg := bc.writeTo(t, cfgDir)
		cmd := exec.Command(r.bridgeBin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), "JOBBRIDGE_LOG_FORMAT=json")
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s: jobbridge did not stop at start-up:\n%s", c.name, out)
		}
		if err == nil || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), file) {
			t.Errorf("%s: exit %v, want a failure naming the %s %s:\n%s", c.name, err, c.want, file, out)
		}
		t.Logf("%s: %v: %s", c.name, err, lastLine(string(out)))
	}
	r.table.add(faultRow{fault: "embedded NATS data dir unwritable (a file)", runs: len(cases), leak: "n/a (refuses to start)",
		note: "the bridge exits 1 at start-up naming the path; nothing is polled, so nothing can be lost"})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// diskFull mounts a small tmpfs for the embedded store, fills it while
// jobs change state, and frees it again.
func (r *faultRig) diskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a 16 MiB tmpfs on %s (the suite runs as root on the CI machine): %v\n%s", mnt, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	sim := tsosim.NewServer(tsosim.Options{Users: map[string]string{"ops": tsoPassword}})
	defer sim.Close()
	ids := tsoStorm(sim, "disk", 24, 4*time.Second, 500*time.Millisecond)
	t.Setenv("TSO_PASSWORD", tsoPassword)
	port := freePort(t)
	cfg := bridgeConf{dir: mnt, httpPort: port, instances: tsoInstance("prod", sim.URL, ids, "")}.writeTo(t, t.TempDir())
	c := startChild(t, r.bridgeBin, "run", "--config", cfg)
	from := c.waitReady(t, 60*time.Second)
	waitReadyz(t, port, 200, 30*time.Second)
	base := baseline(t, port, len(ids))
	filler := filepath.Join(mnt, "filler")
	fill(t, filler, mnt)
	bridgetest.WaitFor(t, 60*time.Second, "/readyz 503 with the disk full", func() bool {
		c, body := get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port), "")
		if c == 503 {
			t.Logf("/readyz with the disk full: %s", strings.TrimSpace(body))
		}
		return c == 503
	})
	time.Sleep(3 * time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, port, 200, 90*time.Second)
	waitTSOTerminal(t, sim, ids, 90*time.Second)
	after := []procStats{sampleStats(t, port)}
	leak := leakCheck(t, "disk full", port, base, after, 5)
	url := readURLFile(t, mnt)
	up := []bridgetest.Window{{From: from, To: time.Now()}}
	rep := checkEvents(t, url, "tso", "prod", tsoTruth(sim, 0), up, 300*time.Millisecond)
	c.stop(t, 30*time.Second)
	r.record(t, faultRow{fault: "embedded NATS disk full (tmpfs), then freed", runs: 1, rep: rep, leak: leak}, len(ids)*4)
}

// fill writes filler until the file system has no space left.
func fill(t *testing.T, path, mnt string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	var st syscall.Statfs_t
	_ = syscall.Statfs(mnt, &st)
	t.Logf("filled %s: %d bytes free", mnt, st.Bavail*uint64(st.Bsize))
}

// readURLFile reads the embedded server's client URL the bridge leaves in
// its data directory.
func readURLFile(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, urlFile))
	if err != nil {
		t.Fatalf("the embedded NATS URL file: %v", err)
	}
	return strings.TrimSpace(string(b))
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// buildBinary compiles jobbridge once for a test that runs it as a real
// child process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jobbridge")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child is a running `jobbridge run`.
type child struct {
	cmd     *exec.Cmd
	ready   chan time.Time
	exited  chan struct{}
	mu      sync.Mutex
	logTail []string
}

func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "JOBBRIDGE_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	c := &child{cmd: cmd, ready: make(chan time.Time, 1), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"message":"bridge running"`) {
				select {
				case c.ready <- time.Now():
				default:
				}
			}
			c.mu.Lock()
			c.logTail = append(c.logTail, line)
			if len(c.logTail) > 40 {
				c.logTail = c.logTail[1:]
			}
			c.mu.Unlock()
		}
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *child) waitReady(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-c.ready:
		return at
	case <-c.exited:
		t.Fatalf("jobbridge exited before it was ready:\n%s", c.logs())
	case <-time.After(timeout):
		t.Fatalf("jobbridge not ready after %s:\n%s", timeout, c.logs())
	}
	return time.Time{}
}

func (c *child) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.logTail, "\n")
}

func (c *child) kill(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-c.exited
	return at
}

func (c *child) stop(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(timeout):
		t.Errorf("jobbridge did not stop within %s after SIGTERM:\n%s", timeout, c.logs())
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("jobbridge exited %d after SIGTERM:\n%s", code, c.logs())
	}
	return time.Now()
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func yamlQuote(s string) string { return fmt.Sprintf("%q", s) }

func natsConnect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

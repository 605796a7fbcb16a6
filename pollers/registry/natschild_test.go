package registry_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsChildEnv, set to a store directory, makes the test binary a NATS
// server process instead of running tests (see TestMain): the benchmarks
// that weigh the bridge's memory per job run the server beside them, as a
// deployment does, so its memory is measured on its own.
const natsChildEnv = "JOBBRIDGE_BENCH_NATS_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(natsChildEnv); dir != "" {
		if err := runNATSChild(dir, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "nats child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runNATSChild serves JetStream on 127.0.0.1 (a random port, printed as
// "URL nats://..." on out) until in reaches EOF: the parent's end of the
// pipe closing, also when the parent dies.
func runNATSChild(dir string, in io.Reader, out io.Writer) error {
	s, err := server.NewServer(&server.Options{
		ServerName: "bench", Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("not ready within 30s")
	}
	fmt.Fprintf(out, "URL %s\n", s.ClientURL())
	_, _ = io.Copy(io.Discard, in)
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// natsProcess is a NATS server child process.
type natsProcess struct {
	url string
	cmd *exec.Cmd
}

// startNATSProcess starts the test binary as a NATS server; it stops at
// the benchmark's cleanup.
func startNATSProcess(b *testing.B) *natsProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), natsChildEnv+"="+b.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("NATS child process: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "URL ")
	if !ok {
		b.Fatalf("NATS child process said %q", line)
	}
	return &natsProcess{url: url, cmd: cmd}
}

// rss is the child's resident set size.
func (p *natsProcess) rss(b *testing.B) int64 {
	b.Helper()
	f := readProcFields(b, p.cmd.Process.Pid, "statm")
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// cpu is the child's user plus system CPU time so far (clock ticks of
// 10ms: read it over windows of seconds).
func (p *natsProcess) cpu(b *testing.B) time.Duration {
	b.Helper()
	f := readProcFields(b, p.cmd.Process.Pid, "stat")
	// Fields after the command name (which may hold spaces): utime is
	// field 14, stime 15 of the whole line.
	var ticks int64
	for _, i := range []int{13, 14} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func readProcFields(b *testing.B, pid int, name string) []string {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	if name == "stat" {
		// Replace "(comm)" so that a command name with spaces does not
		// shift the fields.
		if i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')'); i >= 0 && j > i {
			s = s[:i] + "comm" + s[j+1:]
		}
	}
	f := strings.Fields(s)
	if (name == "stat" && len(f) < 15) || len(f) < 2 {
		b.Fatalf("/proc/%d/%s: %q", pid, name, raw)
	}
	return f
}

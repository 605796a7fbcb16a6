package hmc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	hmcpoll "github.com/jobbridge/jobbridge/pollers/hmc"
)

// connected waits until the notifier is subscribed and has reconciled n
// times in all.
func connected(t *testing.T, n *Notifier, h *fakeHinter, reconciles int) {
	t.Helper()
	waitFor(t, waitLong, "the notifier to subscribe and reconcile", func() bool {
		return n.Status().Connected && h.reconciled() >= reconciles
	})
}

func TestSTOMPCompletionBecomesHint(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("j1")
	via := NewViaPoller(r.poller)
	opts := r.options(t, h)
	opts.Marker = via
	n := start(t, opts)
	connected(t, n, h, 1)
	sess, _ := r.poller.Session()
	if got := n.Status().Topics; len(got) != 1 || got[0] != sess.JobNotificationTopic {
		t.Fatalf("topics = %v, want only the session's job topic %q", got, sess.JobNotificationTopic)
	}
	if h.reconciled() != 1 {
		t.Fatalf("reconciles = %d after connecting, want 1", h.reconciled())
	}
	r.startJob(t, "j1", 20*time.Millisecond)
	waitFor(t, waitLong, "a hint for j1", func() bool { return contains(h.hinted(), "j1") })
	// The hinted poll says how it was caused; a later one does not.
	ref := bridge.JobRef{Vendor: hmcpoll.Vendor, Instance: "prod", ID: "j1"}
	obs, err := via.Poll(context.Background(), ref)
	if err != nil || obs.Via != bridge.DetectedBySTOMP || obs.State != bridge.StateSucceeded {
		t.Fatalf("hinted poll = %+v, %v; want succeeded via stomp", obs, err)
	}
	if obs, _ := via.Poll(context.Background(), ref); obs.Via != bridge.DetectedByPoll {
		t.Fatalf("second poll Via = %q, want poll", obs.Via)
	}
	// A completion of a job nobody watches is counted, not hinted.
	r.startJob(t, "stranger", time.Millisecond)
	waitFor(t, waitLong, "the unknown job to be counted", func() bool { return n.Status().UnknownJobs == 1 })
	if contains(h.hinted(), "stranger") {
		t.Fatal("an unwatched job was hinted")
	}
}

func TestSTOMPHintsJobsWatchedByURI(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("/api/jobs/by-uri")
	n := start(t, r.options(t, h))
	connected(t, n, h, 1)
	r.startJob(t, "by-uri", time.Millisecond)
	waitFor(t, waitLong, "a hint by job-uri", func() bool { return contains(h.hinted(), "/api/jobs/by-uri") })
}

func TestSTOMPReconnectsAndReconcilesAfterDrop(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("lost", "after")
	n := start(t, r.options(t, h))
	connected(t, n, h, 1)

	// The broker goes down: a completion meanwhile is lost for good.
	r.broker.SetRefusing(true)
	if r.broker.DropConnections() != 1 {
		t.Fatal("no connection to drop")
	}
	waitFor(t, waitLong, "the notifier to notice", func() bool { return !n.Status().Connected })
	r.startJob(t, "lost", time.Millisecond)
	waitFor(t, waitLong, "the simulator to lose the message", func() bool { return r.broker.Stats().Unheard == 1 })
	r.broker.SetRefusing(false)

	connected(t, n, h, 2)
	if contains(h.hinted(), "lost") {
		t.Fatal("a message sent while disconnected arrived: the simulator's topics must not be durable")
	}
	// The reconcile after the reconnect is what finds "lost".
	r.startJob(t, "after", time.Millisecond)
	waitFor(t, waitLong, "a hint after the reconnect", func() bool { return contains(h.hinted(), "after") })
	if s := n.Status(); s.Connects != 2 {
		t.Fatalf("connects = %d, want 2", s.Connects)
	}
}

func TestSTOMPStalledConnectionIsDetectedByHeartBeat(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("j")
	n := start(t, r.options(t, h)) // heart-beats of 100ms
	connected(t, n, h, 1)
	started := time.Now()
	if r.broker.StallConnections() != 1 {
		t.Fatal("no connection to stall")
	}
	connected(t, n, h, 2)
	if d := time.Since(started); d > 2*time.Second {
		t.Fatalf("a stalled connection took %s to be replaced; heart-beats of 100ms should find it within a second", d)
	}
	if !strings.Contains(n.Status().LastError, "heart-beat") {
		t.Fatalf("last error %q does not blame the heart-beat", n.Status().LastError)
	}
	r.startJob(t, "j", time.Millisecond)
	waitFor(t, waitLong, "a hint on the new connection", func() bool { return contains(h.hinted(), "j") })
}

func TestSTOMPRefusedTopicIsDroppedNotRetried(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter()
	// Another workflow's session started "theirs"; a second watch names a
	// topic of a session that no longer exists.
	other, err := r.sim.OpenSession(user, password)
	if err != nil {
		t.Fatal(err)
	}
	h.watch("theirs", other.JobNotificationTopic)
	h.watch("stale", "/topic/"+user+".999job")
	n := start(t, r.options(t, h))
	waitFor(t, waitLong, "the stale topic to be refused", func() bool {
		return contains(n.Status().Refused, user+".999job")
	})
	connected(t, n, h, 1)
	sess, _ := r.poller.Session()
	want := []string{other.JobNotificationTopic, sess.JobNotificationTopic}
	waitFor(t, waitLong, "both live topics", func() bool {
		got := n.Status().Topics
		return len(got) == 2 && contains(got, want[0]) && contains(got, want[1])
	})
	connects := n.Status().Connects
	time.Sleep(300 * time.Millisecond) // many watch polls
	if s := n.Status(); s.Connects != connects || r.broker.Stats().RefusedTopics != 1 {
		t.Fatalf("connects %d -> %d, refused %d: the refused topic was tried again", connects, s.Connects, r.broker.Stats().RefusedTopics)
	}
	// A completion on the other session's topic reaches us.
	if _, err := r.sim.StartJob(other.ID, jobDone("theirs")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "a hint for the other session's job", func() bool { return contains(h.hinted(), "theirs") })
}

func TestSTOMPSubscribesToTopicsOfNewWatches(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter()
	n := start(t, r.options(t, h))
	connected(t, n, h, 1)
	other, err := r.sim.OpenSession(user, password)
	if err != nil {
		t.Fatal(err)
	}
	// The job ends before the topic is subscribed: the catch-up hint on
	// the subscription's receipt covers it.
	if _, err := r.sim.StartJob(other.ID, jobDone("early")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	h.watch("early", other.JobNotificationTopic)
	waitFor(t, waitLong, "a catch-up hint for a job of a new topic", func() bool { return contains(h.hinted(), "early") })
	if !contains(n.Status().Topics, other.JobNotificationTopic) {
		t.Fatalf("topics %v lack the new watch's topic", n.Status().Topics)
	}
	if h.reconciled() != 1 {
		t.Fatalf("a new topic reconciled everything (%d); it needs only its own jobs", h.reconciled())
	}
}

func TestSTOMPRelogonResubscribesToTheNewTopics(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("old", "new")
	n := start(t, r.options(t, h))
	connected(t, n, h, 1)
	first, _ := r.poller.Session()
	r.startJob(t, "old", time.Hour) // started by the first session

	// The HMC ends every session (403 reason 5 from now on). Nobody polls:
	// the broker drops the session's connection, the login with the old
	// credential is refused, and the notifier logs on again.
	r.sim.ExpireSessions()
	waitFor(t, waitLong, "a new session", func() bool {
		s, ok := r.poller.Session()
		return ok && s.Generation > first.Generation
	})
	second, _ := r.poller.Session()
	if second.JobNotificationTopic == first.JobNotificationTopic {
		t.Fatal("the simulator reused the topic name")
	}
	waitFor(t, waitLong, "a subscription to the new topic", func() bool {
		s := n.Status()
		return s.Connected && len(s.Topics) == 1 && s.Topics[0] == second.JobNotificationTopic && s.SessionGeneration == second.Generation
	})
	connected(t, n, h, 2)
	r.startJob(t, "new", time.Millisecond)
	waitFor(t, waitLong, "a hint on the new topic", func() bool { return contains(h.hinted(), "new") })
}

func TestSTOMPFollowsSessionRenewedByThePoller(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("j")
	n := start(t, r.options(t, h))
	connected(t, n, h, 1)
	first, _ := r.poller.Session()
	if _, err := r.poller.RenewSession(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	second, _ := r.poller.Session()
	waitFor(t, waitLong, "a subscription to the renewed session's topic", func() bool {
		s := n.Status()
		return s.Connected && s.SessionGeneration == second.Generation && contains(s.Topics, second.JobNotificationTopic)
	})
	connected(t, n, h, 2)
	r.startJob(t, "j", time.Millisecond)
	waitFor(t, waitLong, "a hint", func() bool { return contains(h.hinted(), "j") })
}

func TestSTOMPOverTLS(t *testing.T) {
	r := newRig(t, rigOptions{TLS: true})
	h := newFakeHinter("j")
	opts := r.options(t, h)
	opts.PlainSTOMP = false
	opts.TLS = tlsFor(r.sim.Certificate())
	n := start(t, opts)
	connected(t, n, h, 1)
	r.startJob(t, "j", time.Millisecond)
	waitFor(t, waitLong, "a hint over TLS", func() bool { return contains(h.hinted(), "j") })

	// An untrusted certificate is an error, never a silent fallback.
	opts.TLS = nil
	h2 := newFakeHinter()
	opts.Hinter = h2
	bad := start(t, opts)
	waitFor(t, waitLong, "a TLS failure", func() bool { return strings.Contains(bad.Status().LastError, "certificate") })
	if bad.Status().Connected {
		t.Fatal("connected to an untrusted broker")
	}
}

func TestSTOMPPasswordLogin(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("j")
	opts := r.options(t, h)
	opts.Login, opts.UserID, opts.Password = LoginPassword, user, bridge.NewSecret(password)
	n := start(t, opts)
	connected(t, n, h, 1)
	r.startJob(t, "j", time.Millisecond)
	waitFor(t, waitLong, "a hint", func() bool { return contains(h.hinted(), "j") })

	opts.Password = bridge.NewSecret("wrong")
	h2 := newFakeHinter()
	opts.Hinter = h2
	bad := start(t, opts)
	waitFor(t, waitLong, "a refused login", func() bool { return strings.Contains(bad.Status().LastError, "password is invalid") })
}

func TestStopLeavesNoGoroutine(t *testing.T) {
	r := newRig(t, rigOptions{})
	h := newFakeHinter("j")
	n, err := Start(context.Background(), r.options(t, h))
	if err != nil {
		t.Fatal(err)
	}
	connected(t, n, h, 1)
	r.broker.DropConnections()
	connected(t, n, h, 2)
	r.broker.StallConnections()
	connected(t, n, h, 3)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t)
	waitFor(t, waitLong, "the broker to see the goodbye", func() bool { return r.broker.Connections() == 0 })
}

func TestNewChecksOptions(t *testing.T) {
	r := newRig(t, rigOptions{})
	good := r.options(t, newFakeHinter())
	for name, mut := range map[string]func(*Options){
		"no poller":      func(o *Options) { o.Poller = nil },
		"no hinter":      func(o *Options) { o.Hinter = nil },
		"bad instance":   func(o *Options) { o.Instance = "" },
		"bad mode":       func(o *Options) { o.Mode = "smoke-signals" },
		"password login": func(o *Options) { o.Login = LoginPassword },
		"sse needs url":  func(o *Options) { o.Mode, o.BaseURL = hmcpoll.NotifySSE, "" },
	} {
		o := good
		mut(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	o := good
	o.Mode = hmcpoll.NotifyNone
	if _, err := New(o); err != ErrDisabled {
		t.Errorf("mode none: err = %v, want ErrDisabled", err)
	}
}

func TestInstanceInterval(t *testing.T) {
	for _, c := range []struct {
		mode   hmcpoll.NotificationMode
		safety time.Duration
		want   time.Duration
	}{
		{hmcpoll.NotifySTOMP, 0, DefaultSafetyInterval},
		{hmcpoll.NotifySSE, 2 * time.Minute, 2 * time.Minute},
		{hmcpoll.NotifyNone, time.Minute, 0},
	} {
		if got := InstanceInterval(c.mode, c.safety); got != c.want {
			t.Errorf("InstanceInterval(%s, %s) = %s, want %s", c.mode, c.safety, got, c.want)
		}
	}
}

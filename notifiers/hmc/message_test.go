package hmc

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/jobbridge/jobbridge/bridge"
)

func headers(kv ...string) func(string) (string, bool) {
	return frame.NewHeader(kv...).Contains
}

func TestParseCompletion(t *testing.T) {
	// As the HMC sends it: properties as strings, null body.
	c, ok, err := parseCompletion(headers(
		"destination", "/topic/apiuser.7job", "notification-type", "job-completion",
		"job-uri", "/api/jobs/a1b2-c3", "global-sequence-nr", "6399", "session-sequence-nr", "1"))
	if err != nil || !ok || c.JobID != "a1b2-c3" || c.JobURI != "/api/jobs/a1b2-c3" || c.GlobalSeq != 6399 || c.SessionSeq != 1 || c.BadSeq != "" {
		t.Fatalf("got %+v %v %v", c, ok, err)
	}
	// An escaped job id comes back unescaped.
	if c, _, _ := parseCompletion(headers("notification-type", "job-completion", "job-uri", "/api/jobs/a%2Fb")); c.JobID != "a/b" {
		t.Fatalf("job id %q, want a/b", c.JobID)
	}
	// Other notification types are not completions and not errors.
	if _, ok, err := parseCompletion(headers("notification-type", "property-change", "object-uri", "/api/cpcs/1")); ok || err != nil {
		t.Fatalf("property-change: ok=%v err=%v", ok, err)
	}
	// A bad sequence number does not cost the hint.
	c, ok, err = parseCompletion(headers("notification-type", "job-completion", "job-uri", "/api/jobs/x", "global-sequence-nr", "12a"))
	if !ok || err != nil || c.GlobalSeq != -1 || !strings.Contains(c.BadSeq, "global-sequence-nr") {
		t.Fatalf("bad seq: %+v %v %v", c, ok, err)
	}
	for _, uri := range []string{"", "/api/jobs/", "/api/cpcs/1", "/api/jobs/a/b", "/api/jobs/%zz", "api/jobs/x"} {
		_, ok, err := parseCompletion(headers("notification-type", "job-completion", "job-uri", uri))
		if ok || !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("job-uri %q: ok=%v err=%v, want ErrMalformed", uri, ok, err)
		}
	}
}

func TestParseSSEEvent(t *testing.T) {
	ev := parseSSEEvent([]byte("id: 6400\r\nevent: job-completion\r\ndata: {\"a\":\r\ndata:1}\r\n: note"))
	if ev.ID != "6400" || !ev.HasID || ev.Event != "job-completion" || string(ev.Data) != "{\"a\":\n1}" || ev.Comment {
		t.Fatalf("got %+v", ev)
	}
	if ev := parseSSEEvent([]byte(": keep-alive")); !ev.Comment {
		t.Fatalf("comment: %+v", ev)
	}
	if ev := parseSSEEvent([]byte("id: a\x00b\ndata")); ev.HasID || ev.Data == nil || len(ev.Data) != 0 {
		t.Fatalf("NUL id / bare data: %+v", ev)
	}
	c, ok, err := sseCompletion(parseSSEEvent([]byte(`event: job-completion
data: {"notification-type":"job-completion","job-uri":"/api/jobs/j9","global-sequence-nr":6401,"session-sequence-nr":"2"}`)))
	if err != nil || !ok || c.JobID != "j9" || c.GlobalSeq != 6401 || c.SessionSeq != 2 {
		t.Fatalf("got %+v %v %v", c, ok, err)
	}
	if _, ok, err := sseCompletion(parseSSEEvent([]byte("data: [1,2]"))); ok || !errors.Is(err, bridge.ErrMalformed) {
		t.Fatalf("array data: ok=%v err=%v", ok, err)
	}
}

func TestParseCreateStream(t *testing.T) {
	if id, err := parseCreateStream([]byte(`{"stream-id":"abc"}`)); err != nil || id != "abc" {
		t.Fatalf("%q %v", id, err)
	}
	for _, b := range []string{``, `{}`, `{"stream-id":""}`, `[]`, `{"stream-id":5}`} {
		if _, err := parseCreateStream([]byte(b)); !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err = %v", b, err)
		}
	}
}

// FuzzCompletionHeaders: header lines "key:value" as a STOMP MESSAGE
// carries them. No panic; a completion always names a valid job; a
// malformed job-completion is an error wrapping bridge.ErrMalformed.
func FuzzCompletionHeaders(f *testing.F) {
	f.Add([]byte("notification-type:job-completion\njob-uri:/api/jobs/x\nglobal-sequence-nr:6399\nsession-sequence-nr:1"))
	f.Add([]byte("notification-type:job-completion\njob-uri:/api/jobs/\n"))
	f.Add([]byte("notification-type:property-change\nproperty-names: name status "))
	f.Add([]byte("notification-type:job-completion\njob-uri:/api/jobs/%41\nglobal-sequence-nr:-1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := frame.NewHeader()
		for _, line := range bytes.Split(data, []byte("\n")) {
			if k, v, ok := bytes.Cut(line, []byte(":")); ok {
				h.Add(string(k), string(v))
			}
		}
		c, ok, err := parseCompletion(h.Contains)
		checkParsed(t, c, ok, err)
	})
}

// FuzzSSEEvent: one raw event block. Same contract.
func FuzzSSEEvent(f *testing.F) {
	f.Add([]byte("id: 1\nevent: job-completion\ndata: {\"notification-type\":\"job-completion\",\"job-uri\":\"/api/jobs/x\",\"global-sequence-nr\":1}"))
	f.Add([]byte("event: initial-events-start\ndata: {}"))
	f.Add([]byte(": keep-alive"))
	f.Add([]byte("data: {\"notification-type\":\"job-completion\",\"job-uri\":7}"))
	f.Add([]byte("data: null"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev := parseSSEEvent(raw)
		c, ok, err := sseCompletion(ev)
		checkParsed(t, c, ok, err)
	})
}

func checkParsed(t *testing.T, c completion, ok bool, err error) {
	t.Helper()
	if err != nil {
		if ok || !errors.Is(err, bridge.ErrMalformed) {
			t.Fatalf("ok=%v with error %v (must wrap ErrMalformed, never ok)", ok, err)
		}
		return
	}
	if ok && (bridge.ValidateJobID(c.JobID) != nil || !strings.HasPrefix(c.JobURI, "/api/jobs/")) {
		t.Fatalf("completion %+v names no valid job", c)
	}
}

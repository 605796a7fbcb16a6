package pollkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/jobbridge/jobbridge/bridge"
)

func TestReadCappedWithAnnouncedSize(t *testing.T) {
	const capErr = "the response body exceeds the 8-byte cap"
	for _, c := range []struct {
		name       string
		body       string
		size       int64
		want, fail string
	}{
		{name: "exact", body: "12345678", size: 8, want: "12345678"},
		{name: "short body announced", body: "1234", size: 4, want: "1234"},
		{name: "empty", body: "", size: 0, want: ""},
		{name: "over the cap announced", body: "123456789", size: 9, fail: capErr},
		{name: "unknown size within the cap", body: "1234", size: -1, want: "1234"},
		{name: "unknown size over the cap", body: "123456789", size: -1, fail: capErr},
		// A reader that sends more than it announced is read to the cap.
		{name: "more than announced within the cap", body: "1234567", size: 3, want: "1234567"},
		{name: "more than announced over the cap", body: "123456789", size: 3, fail: capErr},
		{name: "more than announced at the cap", body: "123456789", size: 8, fail: capErr},
		{name: "truncated", body: "12", size: 4, fail: io.ErrUnexpectedEOF.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			// One byte per Read, the least friendly reader there is.
			b, err := readCapped(iotest.OneByteReader(strings.NewReader(c.body)), c.size, 8)
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("got %q, %v; want an error with %q", b, err, c.fail)
				}
				if strings.Contains(c.fail, "cap") && !errors.Is(err, bridge.ErrMalformed) {
					t.Fatalf("cap error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if err != nil || string(b) != c.want {
				t.Fatalf("got %q, %v; want %q", b, err, c.want)
			}
		})
	}
}

func TestReadCappedKnownSizeAllocatesExactly(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 3000)
	b, err := readCapped(bytes.NewReader(body), int64(len(body)), 1<<20)
	if err != nil || len(b) != len(body) || cap(b) > len(body)+64 {
		t.Fatalf("len %d cap %d err %v: want the announced size", len(b), cap(b), err)
	}
}

// TestRequestShape checks what the transport receives from a request built
// without http.NewRequest, and that the caller's Header is left alone
// (pollers share one Header between all their polls).
func TestRequestShape(t *testing.T) {
	type seen struct {
		host, uri, ua, accept, ctype, token, custom string
		length                                      int64
		body                                        string
	}
	got := make(chan seen, 2)
	srv, _ := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Host, r.RequestURI, r.UserAgent(), r.Header.Get("Accept"), r.Header.Get("Content-Type"),
			r.Header.Get("X-Api-Session"), r.Header.Get("X-Custom"), r.ContentLength, string(b)}
		w.Write([]byte(`{"ok":true}`))
	})
	c := newClient(t, ClientOptions{BaseURL: srv.URL + "/base/"})
	auth, err := NewTokenSource(TokenSourceOptions{
		Login: func(context.Context) (Token, error) { return Token{Value: bridge.NewSecret("tok")}, nil },
		Apply: ApplyHeader("X-API-Session", "S "),
	})
	if err != nil {
		t.Fatal(err)
	}
	shared := http.Header{"X-Custom": {"v"}}
	resp, err := c.Do(context.Background(), Request{Path: "/jobs/" + EscapePathSegment("a b"), RawQuery: "limit=2&offset=0", Header: shared, Auth: auth})
	if err != nil || string(resp.Body) != `{"ok":true}` || resp.Path != "/base/jobs/a%20b" {
		t.Fatalf("%+v %v", resp, err)
	}
	s := <-got
	want := seen{host: strings.TrimPrefix(srv.URL, "http://"), uri: "/base/jobs/a%20b?limit=2&offset=0", ua: DefaultUserAgent,
		accept: "application/json", token: "S tok", custom: "v"}
	if s != want {
		t.Errorf("GET seen as %+v, want %+v", s, want)
	}
	if len(shared) != 1 || len(shared["X-Custom"]) != 1 {
		t.Errorf("the caller's Header was modified: %v", shared)
	}

	if _, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/login", Body: []byte(`{"u":1}`), Idempotent: true}); err != nil {
		t.Fatal(err)
	}
	s = <-got
	if s.ctype != "application/json" || s.length != 7 || s.body != `{"u":1}` || s.token != "" {
		t.Errorf("POST seen as %+v", s)
	}
}

// TestConnectionsAreReused: a body read to its announced length must still
// hand the connection back to the pool.
func TestConnectionsAreReused(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status":"RUNNING"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, ClientOptions{BaseURL: srv.URL})
	for range 5 {
		resp, err := c.Do(context.Background(), Request{Path: "/status"})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%+v %v", resp, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 sequential requests opened %d connections, want 1", n)
	}
}

package simkit

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/pollers/pollkit/simkit/simtest"
)

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHostServesTLSWithItsCertificate(t *testing.T) {
	h := NewHost()
	defer h.Close()
	ts, err := h.Listen(LocalAddr, true, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ts.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", ts.URL)
	}
	cert := h.Certificate()
	if cert == nil || cert.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("certificate %v is not for 127.0.0.1", cert)
	}
	if code, body := get(t, h.Client(), ts.URL); code != 200 || body != "hello" {
		t.Fatalf("with the host's client: %d %q", code, body)
	}
	// A client that does not trust the certificate is refused.
	if _, err := http.Get(ts.URL); err == nil {
		t.Fatal("an untrusting client got through")
	}
}

func TestHostWithoutTLSAndOnAGivenAddress(t *testing.T) {
	l, err := net.Listen("tcp", LocalAddr)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := NewHost()
	defer h.Close()
	ts, err := h.Listen(addr, false, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	if ts.URL != "http://"+addr || h.Certificate() != nil {
		t.Fatalf("URL %s, certificate %v", ts.URL, h.Certificate())
	}
	if _, err := NewHost().Listen(addr, false, http.NotFoundHandler()); err == nil {
		t.Fatal("a second host listened on a taken address")
	}
}

func TestCloseCutsHoldsShortStopsListenersAndWaits(t *testing.T) {
	h := NewHost()
	held := make(chan bool, 1)
	entered := make(chan struct{})
	ts, err := h.Listen(LocalAddr, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		held <- h.Hold(r, time.Hour)
	}))
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.Listen(LocalAddr, false, http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	h.OnClose(func() { note("hook 1") })
	h.OnClose(func() { note("hook 2") })
	h.Go(func(done <-chan struct{}) {
		<-done
		time.Sleep(20 * time.Millisecond)
		note("goroutine")
	})
	go func() {
		if resp, err := http.Get(ts.URL); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	start := time.Now()
	h.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if ok := <-held; ok {
		t.Error("Hold reported a full wait although the host closed")
	}
	mu.Lock()
	if got := strings.Join(order, ", "); got != "hook 1, hook 2, goroutine" {
		t.Errorf("close order: %s", got)
	}
	mu.Unlock()
	for _, u := range []string{ts.URL, second.URL} {
		if _, err := http.Get(u); err == nil {
			t.Errorf("%s still answers after Close", u)
		}
	}
	h.Close() // a second Close does nothing
	if _, err := h.Listen(LocalAddr, false, http.NotFoundHandler()); err == nil {
		t.Error("a closed host listened again")
	}
}

func TestHoldWaitsAndStopsWithTheClient(t *testing.T) {
	h := NewHost()
	defer h.Close()
	req, _ := http.NewRequest("GET", "/", nil)
	start := time.Now()
	if !h.Hold(req, 30*time.Millisecond) || time.Since(start) < 30*time.Millisecond {
		t.Fatal("Hold did not wait its time")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if h.Hold(req.WithContext(ctx), time.Hour) {
		t.Fatal("Hold went on for a client that gave up")
	}
}

func TestLogRequestsLogsStatusNeverQueryOrHeaders(t *testing.T) {
	var logs simtest.LogBuffer
	h := NewHost()
	defer h.Close()
	ts, err := h.Listen(LocalAddr, false, LogRequests(logs.Logger(),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/teapot":
				w.WriteHeader(http.StatusTeapot)
				return
			case "/by-hand":
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				buf.WriteString("HTTP/1.1 204 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
				buf.Flush()
				return
			}
			io.WriteString(w, "ok") // implicit 200
		})))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/teapot?token=s3cret", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, http.DefaultClient, ts.URL+"/a%2Fb")
	if code, _ := get(t, http.DefaultClient, ts.URL+"/by-hand"); code != http.StatusNoContent {
		t.Errorf("the hand-written answer came as %d", code)
	}
	h.Close() // the log lines are written once the handlers return...
	// ...except the hijacked one's, which Close does not wait for.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "by-hand") && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{`"path":"/teapot","status":418`, `"path":"/a%2Fb","status":200`, `"path":"/by-hand","hijacked":true`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret", "t0ken"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
}

func TestMustPanicsNamingTheServer(t *testing.T) {
	type server struct{}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "simkit.server: no port") {
			t.Fatalf("recovered %v", r)
		}
	}()
	Must((*server)(nil), errString("no port"))
}

type errString string

func (e errString) Error() string { return string(e) }

func TestWriteJSONKeepsMarkupAndTheVendorsContentType(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, "application/json;charset=UTF-8", map[string]string{"value": "<result>a&b</result>"})
	if rec.Code != 201 || rec.Header().Get("Content-Type") != "application/json;charset=UTF-8" ||
		rec.Body.String() != `{"value":"<result>a&b</result>"}`+"\n" {
		t.Fatalf("%d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WriteJSON(rec, 200, "application/json", func() {})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("an unencodable value answered %d", rec.Code)
	}
}

func TestReadBodyHasALimit(t *testing.T) {
	rec := httptest.NewRecorder()
	r, _ := http.NewRequest("POST", "/", strings.NewReader("12345"))
	if b, err := ReadBody(rec, r, 5); err != nil || string(b) != "12345" {
		t.Fatalf("%q %v", b, err)
	}
	r, _ = http.NewRequest("POST", "/", strings.NewReader("123456"))
	if _, err := ReadBody(rec, r, 5); err == nil {
		t.Fatal("a body over the limit was read")
	}
}

func TestRandomShapes(t *testing.T) {
	if h := RandomHex(16); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(h) || h == RandomHex(16) {
		t.Errorf("RandomHex %q", h)
	}
	if u := RandomUUID(); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(u) {
		t.Errorf("RandomUUID %q", u)
	}
	if b, err := base64.RawURLEncoding.DecodeString(RandomBase64(base64.RawURLEncoding, 96)); err != nil || len(b) != 96 {
		t.Errorf("RandomBase64: %d bytes, %v", len(b), err)
	}
}

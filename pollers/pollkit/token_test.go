package pollkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
)

const testPassword = "pa55-Wörd-SECRET"

// authServer issues token "tok-N" on the N-th good login and accepts only
// the newest token, the way a session server does after a timeout.
type authServer struct {
	*httptest.Server
	logins  atomic.Int64
	mu      sync.Mutex
	valid   string
	denyAll bool // refuse every token (an account without read rights)
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	s := &authServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			var in struct{ Password string }
			if json.NewDecoder(r.Body).Decode(&in) != nil || in.Password != testPassword {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			tok := fmt.Sprintf("tok-%d-%s", s.logins.Add(1), strings.Repeat("Z", 8))
			s.mu.Lock()
			s.valid = tok
			s.mu.Unlock()
			w.Header().Set("Token", tok)
		default:
			s.mu.Lock()
			ok := !s.denyAll && s.valid != "" && r.Header.Get("Token") == s.valid
			s.mu.Unlock()
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, `{"status":"RUNNING"}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authServer) expireAll() {
	s.mu.Lock()
	s.valid = ""
	s.mu.Unlock()
}

func loginVia(c *Client, password bridge.Secret) func(context.Context) (Token, error) {
	return func(ctx context.Context) (Token, error) {
		body, _ := json.Marshal(map[string]string{"username": "ops", "password": password.Reveal()})
		resp, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/login", Body: body, Idempotent: true})
		if err != nil {
			return Token{}, err
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return Token{}, fmt.Errorf("%w: login refused for user ops", bridge.ErrAuth)
		}
		return Token{Value: bridge.NewSecret(resp.Header.Get("Token"))}, nil
	}
}

func newSession(t *testing.T, srv *authServer, password string) (*Client, *TokenSource, *syncBuffer) {
	t.Helper()
	log, buf := captureLogger()
	c := newClient(t, ClientOptions{BaseURL: srv.URL, Logger: log, MaxConcurrent: 64})
	ts, err := NewTokenSource(TokenSourceOptions{
		Name:   "test/ops",
		Login:  loginVia(c, bridge.NewSecret(password)),
		Apply:  ApplyHeader("Token", ""),
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, ts, buf
}

func assertNoSecrets(t *testing.T, where, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			t.Fatalf("%s contains the secret %q:\n%s", where, sec, s)
		}
	}
}

func TestSingleFlightRenewalUnderConcurrency(t *testing.T) {
	srv := newAuthServer(t)
	c, ts, logs := newSession(t, srv, testPassword)
	if _, err := c.Do(context.Background(), Request{Path: "/status", Auth: ts}); err != nil {
		t.Fatalf("first call: %v", err)
	}
	srv.expireAll()

	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 200 {
		wg.Go(func() {
			resp, err := c.Do(context.Background(), Request{Path: "/status", Auth: ts})
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				t.Errorf("poll after expiry: resp %v err %v", resp, err)
			}
		})
	}
	wg.Wait()
	if n := srv.logins.Load(); n != 2 {
		t.Fatalf("%d logins for 200 polls that all met one expired token; want 2 (initial + one renewal)", n)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d polls failed", failed.Load())
	}
	assertNoSecrets(t, "log", logs.String(), testPassword, "tok-1-", "tok-2-")
	if !strings.Contains(logs.String(), "logged in") {
		t.Fatalf("the log says nothing about logins, so the secret check proves little:\n%s", logs.String())
	}
}

func TestAuthFailureAfterRenewalIsErrAuth(t *testing.T) {
	srv := newAuthServer(t)
	srv.denyAll = true
	c, ts, logs := newSession(t, srv, testPassword)
	_, err := c.Do(context.Background(), Request{Path: "/status", Auth: ts})
	if !errors.Is(err, bridge.ErrAuth) {
		t.Fatalf("err = %v, want bridge.ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "check the user name, password") {
		t.Fatalf("error %q does not tell the user to check the credentials", err)
	}
	if n := srv.logins.Load(); n != 2 {
		t.Fatalf("%d logins; want the first and exactly one renewal", n)
	}
	assertNoSecrets(t, "error", err.Error(), testPassword, "tok-")
	assertNoSecrets(t, "log", logs.String(), testPassword, "tok-")
}

func TestWrongPasswordBacksOffLogins(t *testing.T) {
	srv := newAuthServer(t)
	c, ts, logs := newSession(t, srv, "wrong-"+testPassword)
	var hits atomic.Int64
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		inner.ServeHTTP(w, r)
	})
	for i := range 5 {
		_, err := c.Do(context.Background(), Request{Path: "/status", Auth: ts})
		if !errors.Is(err, bridge.ErrAuth) {
			t.Fatalf("call %d: err = %v, want bridge.ErrAuth", i, err)
		}
		if i > 0 && !strings.Contains(err.Error(), "not logging in again") {
			t.Fatalf("call %d: err = %v, want the login backoff to answer", i, err)
		}
		assertNoSecrets(t, "error", err.Error(), testPassword)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the server saw %d requests for 5 polls with a wrong password; want 1 login", n)
	}
	assertNoSecrets(t, "log", logs.String(), testPassword)
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRenewsBeforeKnownExpiry(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logins atomic.Int64
	var fail atomic.Bool
	ts, err := NewTokenSource(TokenSourceOptions{
		Login: func(context.Context) (Token, error) {
			if fail.Load() {
				return Token{}, errors.New("identity service unavailable")
			}
			n := logins.Add(1)
			return Token{Value: bridge.NewSecret(fmt.Sprint("jwt-", n)), Expiry: clk.Now().Add(15 * time.Minute)}, nil
		},
		Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := func() string {
		t.Helper()
		tk, err := ts.Token(ctx)
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		return tk.Value.Reveal()
	}
	if got := tok(); got != "jwt-1" {
		t.Fatalf("first token %q", got)
	}
	clk.Advance(9 * time.Minute)
	if got := tok(); got != "jwt-1" || logins.Load() != 1 {
		t.Fatalf("at 9 of 15 minutes: token %q after %d logins; want no renewal yet", got, logins.Load())
	}
	clk.Advance(time.Minute + time.Second) // two thirds of the lifetime have passed
	if got := tok(); got != "jwt-2" {
		t.Fatalf("at 10 of 15 minutes: token %q, want a proactive renewal", got)
	}

	// A failed early renewal keeps the still-valid token...
	clk.Advance(11 * time.Minute)
	fail.Store(true)
	if got := tok(); got != "jwt-2" {
		t.Fatalf("failed early renewal: token %q, want the current one until it expires", got)
	}
	// ...but not past its expiry.
	clk.Advance(5 * time.Minute)
	if _, err := ts.Token(ctx); err == nil || !strings.Contains(err.Error(), "identity service unavailable") {
		t.Fatalf("after expiry with logins failing: err = %v", err)
	}
	if _, err := ts.Token(ctx); err == nil || !strings.Contains(err.Error(), "not logging in again") {
		t.Fatalf("right after a failed login: err = %v, want the login backoff to answer", err)
	}
	// Once the login backoff has passed, the next call logs in again.
	fail.Store(false)
	clk.Advance(10 * time.Minute)
	if got := tok(); got != "jwt-3" {
		t.Fatalf("after recovery: token %q, want jwt-3", got)
	}
}

func TestExplicitRenewBefore(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logins atomic.Int64
	ts, _ := NewTokenSource(TokenSourceOptions{
		Login: func(context.Context) (Token, error) {
			logins.Add(1)
			return Token{Value: bridge.NewSecret("iam"), Expiry: clk.Now().Add(24 * time.Hour)}, nil
		},
		RenewBefore: time.Hour,
		Now:         clk.Now,
	})
	ts.Token(context.Background())
	clk.Advance(22 * time.Hour)
	ts.Token(context.Background())
	if logins.Load() != 1 {
		t.Fatalf("renewed at 22h of 24h with RenewBefore 1h")
	}
	clk.Advance(time.Hour)
	ts.Token(context.Background())
	if logins.Load() != 2 {
		t.Fatalf("not renewed at 23h of 24h with RenewBefore 1h")
	}
}

func TestWaiterSurvivesLeaderCancel(t *testing.T) {
	entered := make(chan struct{}, 4)
	var logins atomic.Int64
	ts, _ := NewTokenSource(TokenSourceOptions{
		Login: func(ctx context.Context) (Token, error) {
			if logins.Add(1) == 1 {
				entered <- struct{}{}
				<-ctx.Done()
				return Token{}, ctx.Err()
			}
			return Token{Value: bridge.NewSecret("second")}, nil
		},
	})
	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := ts.Token(leaderCtx)
		leaderErr <- err
	}()
	<-entered
	waiter := make(chan string, 1)
	go func() {
		tok, err := ts.Token(context.Background())
		if err != nil {
			waiter <- "error: " + err.Error()
			return
		}
		waiter <- tok.Value.Reveal()
	}()
	time.Sleep(20 * time.Millisecond) // let the waiter join the flight
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v, want context.Canceled", err)
	}
	select {
	case got := <-waiter:
		if got != "second" {
			t.Fatalf("waiter got %q, want the token of its own retried login", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter still blocked after the leader gave up")
	}
}

func TestForgetAndEmptyToken(t *testing.T) {
	var logins atomic.Int64
	ts, _ := NewTokenSource(TokenSourceOptions{
		Login: func(context.Context) (Token, error) {
			if logins.Add(1) == 3 {
				return Token{}, nil
			}
			return Token{Value: bridge.NewSecret("s")}, nil
		},
		LoginBackoff: backoffForTests,
	})
	ctx := context.Background()
	ts.Token(ctx)
	if tok, had := ts.Forget(); !had || tok.Value.Reveal() != "s" {
		t.Fatalf("Forget = %v, %v", tok, had)
	}
	if _, had := ts.Forget(); had {
		t.Fatal("second Forget still had a token")
	}
	ts.Token(ctx)
	if logins.Load() != 2 {
		t.Fatalf("Token after Forget did not log in again")
	}
	ts.Forget()
	if _, err := ts.Token(ctx); err == nil || !strings.Contains(err.Error(), "empty token") {
		t.Fatalf("a login returning no token gave err %v", err)
	}
	if _, err := NewTokenSource(TokenSourceOptions{}); err == nil {
		t.Fatal("a TokenSource without Login was accepted")
	}
}

func TestTokenPrintsRedacted(t *testing.T) {
	tok := Token{Value: bridge.NewSecret("hunter2"), Extra: map[string]string{"topic": "t"}}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok)} {
		assertNoSecrets(t, "formatted token", s, "hunter2")
	}
}

package pollkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/backoff"
)

// Token is a credential obtained by logging in: a session token, a JWT, an
// IAM token, an HMC session id.
type Token struct {
	// Value is what Apply puts on a request.
	Value bridge.Secret
	// Expiry is when the vendor stops accepting Value; zero when the vendor
	// does not say (TSO sessions end after an idle timeout nobody reports).
	Expiry time.Time
	// Extra holds non-secret facts the login returned that the vendor code
	// wants later (HMC notification topics, say).
	Extra map[string]string

	gen uint64 // which login produced it; 0 for "none"
}

// TokenSourceOptions configure a TokenSource.
type TokenSourceOptions struct {
	// Name says whose credentials these are in logs and errors
	// ("tso/prod user ops"). It must not hold a secret.
	Name string
	// Login obtains a new token. It must return an error wrapping
	// bridge.ErrAuth when the vendor rejects the credentials themselves, so
	// the user hears "check the credentials" rather than "retry later".
	Login func(ctx context.Context) (Token, error)
	// Apply puts the token on an outgoing request; nil means
	// ApplyHeader("Authorization", "Bearer ").
	Apply func(req *http.Request, tok Token)
	// IsAuthFailure tells a response refused for its credentials (TSO 401,
	// ArcGIS error 498 inside a 200, HMC 403 reason 4 or 5); nil means
	// status 401.
	IsAuthFailure func(resp *Response) bool
	// RenewBefore renews a token whose Expiry is known this long before it;
	// zero means after two thirds of its lifetime (10 minutes of a 15-minute
	// JWT, 16 hours of a 24-hour IAM token).
	RenewBefore time.Duration
	// LoginBackoff spaces failed logins; zero fields mean 1 s growing to
	// 5 min. Logins are never retried in a tight loop: a wrong password
	// retried by 200 polls a second would lock the account.
	LoginBackoff backoff.Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives renewal notes. Tokens and passwords are never logged.
	Logger zerolog.Logger
}

// ApplyHeader returns an Apply func that sets header name to prefix+token
// (TSO: "Authentication-Token", ""; Helix: "Authorization", "Bearer ";
// Huawei: "X-Auth-Token", "").
//
// The header value is built once per token, not per request: the func keeps
// the last one (a token is sent thousands of times between renewals), and
// requests share it, as a RoundTripper must not modify a request.
func ApplyHeader(name, prefix string) func(*http.Request, Token) {
	key := http.CanonicalHeaderKey(name)
	var last atomic.Pointer[appliedHeader]
	return func(req *http.Request, tok Token) {
		secret := tok.Value.Reveal()
		h := last.Load()
		if h == nil || h.secret != secret {
			h = &appliedHeader{secret: secret, value: []string{prefix + secret}}
			last.Store(h)
		}
		req.Header[key] = h.value
	}
}

// appliedHeader is a token and the header value built from it.
type appliedHeader struct {
	secret string
	value  []string
}

// TokenSource caches one token and renews it: before its Expiry when that is
// known, and when a response is classified as an auth failure. Renewals are
// single-flight: however many requests fail together with the same token,
// one login runs and all of them wait for it. It is safe for concurrent use.
type TokenSource struct {
	opts TokenSourceOptions
	name string
	log  zerolog.Logger

	mu        sync.Mutex
	cur       Token
	has       bool
	renewAt   time.Time // zero: renew only on failure
	gen       uint64
	flight    *flight
	failures  int
	nextLogin time.Time
	lastErr   error
}

type flight struct {
	done chan struct{}
	tok  Token
	err  error
}

// NewTokenSource checks opts. It does not log in: the first Token does.
func NewTokenSource(opts TokenSourceOptions) (*TokenSource, error) {
	if opts.Login == nil {
		return nil, errors.New("TokenSourceOptions.Login is nil: say how to log in to the vendor")
	}
	if opts.Apply == nil {
		opts.Apply = ApplyHeader("Authorization", "Bearer ")
	}
	if opts.IsAuthFailure == nil {
		opts.IsAuthFailure = func(r *Response) bool { return r.StatusCode == http.StatusUnauthorized }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LoginBackoff.Initial <= 0 {
		opts.LoginBackoff.Initial = time.Second
	}
	if opts.LoginBackoff.Max <= 0 {
		opts.LoginBackoff.Max = 5 * time.Minute
	}
	name := opts.Name
	if name == "" {
		name = "vendor login"
	}
	return &TokenSource{
		opts: opts,
		name: name,
		log:  opts.Logger.With().Str("component", "pollkit.token").Str("credentials", name).Logger(),
	}, nil
}

// Token returns the cached token, logging in first when there is none or
// when it is due for renewal. A due renewal that fails still returns the old
// token while it has not expired, so a login hiccup does not fail polls.
func (s *TokenSource) Token(ctx context.Context) (Token, error) {
	s.mu.Lock()
	now := s.opts.Now()
	if s.has && (s.renewAt.IsZero() || now.Before(s.renewAt)) {
		tok := s.cur
		s.mu.Unlock()
		return tok, nil
	}
	stale, has := s.cur, s.has
	s.mu.Unlock()

	tok, err := s.Renew(ctx, stale)
	if err != nil && has && now.Before(stale.Expiry) && ctx.Err() == nil {
		s.log.Warn().Err(err).Time("expiry", stale.Expiry).Msg("early token renewal failed; using the current token until it expires")
		return stale, nil
	}
	return tok, err
}

// Renew replaces stale with a new token, unless another caller already did
// (then that token is returned) or a login is running (then it is awaited).
// After failed logins it returns the last failure, without logging in again,
// until the LoginBackoff delay has passed.
func (s *TokenSource) Renew(ctx context.Context, stale Token) (Token, error) {
	for {
		s.mu.Lock()
		if s.has && s.cur.gen != stale.gen {
			tok := s.cur
			s.mu.Unlock()
			return tok, nil
		}
		if f := s.flight; f != nil {
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return Token{}, ctx.Err()
			case <-f.done:
			}
			// The leader's own context may have ended its login; ours is
			// still alive, so try again rather than fail on its behalf.
			if f.err != nil && isContextErr(f.err) && ctx.Err() == nil {
				continue
			}
			return f.tok, f.err
		}
		if now := s.opts.Now(); now.Before(s.nextLogin) {
			err := fmt.Errorf("%s: not logging in again before %s after %d failed attempts: %w",
				s.name, s.nextLogin.Format(time.RFC3339), s.failures, s.lastErr)
			s.mu.Unlock()
			return Token{}, err
		}
		f := &flight{done: make(chan struct{})}
		s.flight = f
		s.mu.Unlock()

		tok, err := s.login(ctx)
		s.finish(f, tok, err, ctx)
		return f.tok, f.err
	}
}

func (s *TokenSource) login(ctx context.Context) (tok Token, err error) {
	defer func() {
		// A panicking Login must not leave waiters blocked forever.
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: login panicked: %v", s.name, r)
		}
	}()
	return s.opts.Login(ctx)
}

func (s *TokenSource) finish(f *flight, tok Token, err error, ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.flight = nil
	switch {
	case err == nil && tok.Value.IsZero():
		err = fmt.Errorf("%s: login succeeded but returned an empty token", s.name)
		fallthrough
	case err != nil:
		f.err = fmt.Errorf("%s: %w", s.name, err)
		if isContextErr(err) && ctx.Err() != nil {
			// The caller gave up; that says nothing about the vendor.
			s.log.Debug().Err(err).Msg("login abandoned by its caller")
			break
		}
		s.failures++
		s.lastErr = err
		s.nextLogin = now.Add(s.opts.LoginBackoff.Delay(s.failures - 1))
		s.log.Warn().Err(err).Int("failures", s.failures).Time("next_login", s.nextLogin).Msg("login failed")
	default:
		s.gen++
		tok.gen = s.gen
		s.cur, s.has = tok, true
		s.failures, s.nextLogin, s.lastErr = 0, time.Time{}, nil
		s.renewAt = time.Time{}
		if !tok.Expiry.IsZero() {
			before := s.opts.RenewBefore
			if before <= 0 {
				before = tok.Expiry.Sub(now) / 3
			}
			s.renewAt = tok.Expiry.Add(-before)
		}
		f.tok = tok
		ev := s.log.Debug().Uint64("generation", s.gen)
		if !tok.Expiry.IsZero() {
			ev = ev.Time("expiry", tok.Expiry).Time("renew_at", s.renewAt)
		}
		ev.Msg("logged in")
	}
	close(f.done)
}

// Forget drops the cached token and returns it, for a logout. The next
// Token logs in again.
func (s *TokenSource) Forget() (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, had := s.cur, s.has
	s.cur, s.has, s.renewAt = Token{}, false, time.Time{}
	return tok, had
}

func (s *TokenSource) apply(req *http.Request, tok Token) { s.opts.Apply(req, tok) }

func (s *TokenSource) isAuthFailure(resp *Response) bool { return s.opts.IsAuthFailure(resp) }

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

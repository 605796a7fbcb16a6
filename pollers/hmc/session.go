package hmc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// SessionHeader carries the api-session on every request after Logon.
const SessionHeader = "X-API-Session"

// Session is the poller's API session as the HMC's Logon returned it: what a
// notifier needs to connect (STOMP login = ID, passcode = Credential) and
// subscribe (JobNotificationTopic). Every logon, and so every renewal after
// HTTP 403 reason 5, yields new values for all of them, topics included.
type Session struct {
	// ID is the api-session (the X-API-Session header).
	ID bridge.Secret
	// Credential is the session-credential; zero when the HMC gave none
	// (then a STOMP client must log in with userid and password).
	Credential bridge.Secret
	// NotificationTopic is the session's object notification topic.
	NotificationTopic string
	// JobNotificationTopic receives the job-completion messages of the jobs
	// this session started, and of no other.
	JobNotificationTopic string
	APIMajorVersion      int
	APIMinorVersion      int
	APIFeatures          []string
	// Generation counts the poller's logons: 1 for the first, +1 for each
	// renewal. Zero means no session (logged off).
	Generation uint64
	// LoggedOnAt is when the logon answered, by the poller's clock.
	LoggedOnAt time.Time
}

// Active reports whether s is a session rather than "logged off".
func (s Session) Active() bool { return !s.ID.IsZero() }

// logon runs Logon (POST /api/sessions). The password goes only into the
// request body, which nothing logs. A resent logon after a network error can
// leave one unused session on the HMC until it times out; that is better than
// not logging on, and the HMC allows many sessions per user.
func (p *Poller) logon(ctx context.Context) (pollkit.Token, error) {
	body, err := json.Marshal(struct {
		UserID   string `json:"userid"`
		Password string `json:"password"`
	}{p.userid, p.password.Reveal()})
	if err != nil {
		return pollkit.Token{}, err
	}
	resp, err := p.client.Do(ctx, pollkit.Request{Method: http.MethodPost, Path: "/api/sessions", Body: body, Idempotent: true})
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("HMC logon: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		what := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if e, ok := parseAPIError(resp.Body); ok {
			what = e.describe(resp.StatusCode)
		}
		return pollkit.Token{}, fmt.Errorf("%w: HMC %s refused the logon of user %q (%s): check the userid and password, that the user is not disabled or locked, and that it may use the Web Services API",
			bridge.ErrAuth, p.instance, p.userid, what)
	default:
		return pollkit.Token{}, fmt.Errorf("HMC logon: %w", pollkit.UnexpectedStatus(resp))
	}
	s, err := parseLogon(resp.Body)
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("HMC %s answered the logon with HTTP %d but %w; check that the URL is the HMC's Web Services API (https://host:6794)", p.instance, resp.StatusCode, err)
	}
	s.LoggedOnAt = p.now()
	p.setSession(s)
	return pollkit.Token{Value: s.ID, Extra: map[string]string{
		"notification-topic":     s.NotificationTopic,
		"job-notification-topic": s.JobNotificationTopic,
	}}, nil
}

// parseLogon reads the Logon response. api-session is required; the topics
// are kept as given (an HMC without job notifications leaves the job topic
// out, and polling works without it).
func parseLogon(body []byte) (Session, error) {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return Session{}, fmt.Errorf("no Logon response: %w", err)
	}
	str := func(k string) string { v, _, _ := o.String(k); return v }
	id := str("api-session")
	if id == "" {
		return Session{}, fmt.Errorf("%w: no api-session in the Logon response", bridge.ErrMalformed)
	}
	s := Session{
		ID:                   bridge.NewSecret(id),
		Credential:           bridge.NewSecret(str("session-credential")),
		NotificationTopic:    str("notification-topic"),
		JobNotificationTopic: str("job-notification-topic"),
	}
	if v, ok := intField(o, "api-major-version"); ok {
		s.APIMajorVersion = int(v)
	}
	if v, ok := intField(o, "api-minor-version"); ok {
		s.APIMinorVersion = int(v)
	}
	if raw, ok := o.Get("api-features"); ok {
		_ = json.Unmarshal(raw, &s.APIFeatures) // optional and informative only
	}
	return s, nil
}

// setSession installs a new session and tells the subscribers.
func (p *Poller) setSession(s Session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	p.gen++
	s.Generation = p.gen
	p.sess = s
	p.publishLocked(s)
	p.log.Info().Uint64("generation", s.Generation).Str("job_topic", s.JobNotificationTopic).
		Int("api_major", s.APIMajorVersion).Int("api_minor", s.APIMinorVersion).Msg("logged on to the HMC")
}

// clearSession forgets the session whose id is id, if it is still the
// current one, and tells the subscribers that there is none.
func (p *Poller) clearSession(id bridge.Secret) {
	p.smu.Lock()
	defer p.smu.Unlock()
	if !p.sess.Active() || p.sess.ID.Reveal() != id.Reveal() {
		return
	}
	p.sess = Session{}
	p.publishLocked(Session{})
}

func (p *Poller) publishLocked(s Session) {
	for _, ch := range p.subs {
		// Keep only the newest value: a subscriber that fell behind skips
		// sessions that are already stale, never the current one.
		select {
		case <-ch:
		default:
		}
		ch <- s
	}
}

// Session returns the current session, false when there is none (before
// the first poll, after Close).
func (p *Poller) Session() (Session, bool) {
	p.smu.Lock()
	defer p.smu.Unlock()
	return p.sess, p.sess.Active()
}

// SubscribeSession returns a channel that receives the session after every
// logon (the first one and every renewal, with new topic names) and a zero
// Session after Close logged it off. It starts with the current session, if
// any. The channel holds one value: a slow reader finds the newest session,
// never a stale one. A notifier reconnects and resubscribes on each value,
// then asks the bridge to reconcile, since the HMC replays nothing.
// cancel ends the subscription and closes the channel.
func (p *Poller) SubscribeSession() (<-chan Session, func()) {
	ch := make(chan Session, 1)
	p.smu.Lock()
	id := p.nextSub
	p.nextSub++
	p.subs[id] = ch
	if p.sess.Active() {
		ch <- p.sess
	}
	p.smu.Unlock()
	return ch, func() {
		p.smu.Lock()
		defer p.smu.Unlock()
		if _, ok := p.subs[id]; ok {
			delete(p.subs, id)
			close(ch)
		}
	}
}

// EnsureSession returns the current session, logging on first when there is
// none: a notifier must subscribe to the job topic before jobs are started.
func (p *Poller) EnsureSession(ctx context.Context) (Session, error) {
	if _, err := p.auth.Token(ctx); err != nil {
		return Session{}, fmt.Errorf("hmc %s: %w", p.instance, err)
	}
	s, ok := p.Session()
	if !ok {
		return Session{}, fmt.Errorf("hmc %s: the session was logged off meanwhile; try again", p.instance)
	}
	return s, nil
}

// RenewSession logs on again if stale is still the current session (a
// notifier found its topic refused as unknown, say), logging stale off on a
// best-effort basis so it does not linger on the HMC. If another caller
// renewed it already, that session is returned without a new logon.
func (p *Poller) RenewSession(ctx context.Context, stale Session) (Session, error) {
	tok, err := p.auth.Token(ctx)
	if err != nil {
		return Session{}, fmt.Errorf("hmc %s: %w", p.instance, err)
	}
	if stale.Active() && tok.Value.Reveal() == stale.ID.Reveal() {
		if _, err := p.auth.Renew(ctx, tok); err != nil {
			return Session{}, fmt.Errorf("hmc %s: %w", p.instance, err)
		}
		if err := p.logoff(ctx, stale.ID); err != nil {
			p.log.Debug().Err(err).Msg("logging off the replaced session failed; the HMC ends it at its timeout")
		}
	}
	return p.EnsureSession(ctx)
}

// logoff runs Logoff (DELETE /api/sessions/this-session) for the session id.
// 403 means the session had ended already, which is what we wanted.
func (p *Poller) logoff(ctx context.Context, id bridge.Secret) error {
	resp, err := p.client.Do(ctx, pollkit.Request{
		Method: http.MethodDelete,
		Path:   "/api/sessions/this-session",
		Header: http.Header{SessionHeader: {id.Reveal()}},
	})
	if err != nil {
		return fmt.Errorf("hmc %s: logoff: %w", p.instance, err)
	}
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK, http.StatusForbidden:
		return nil
	}
	return fmt.Errorf("hmc %s: logoff: %w", p.instance, pollkit.UnexpectedStatus(resp))
}

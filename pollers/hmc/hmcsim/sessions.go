package hmcsim

import (
	"crypto/rand"
	"time"
)

// SessionInfo describes one API session, as a STOMP broker or SSE endpoint
// built onto the simulator needs it: who logged on, with what credentials,
// and which topics belong to it.
type SessionInfo struct {
	// ID is the api-session (the X-API-Session header, and the STOMP login).
	ID string
	// Credential is the session-credential (the STOMP passcode).
	Credential string
	UserID     string
	// NotificationTopic is the object notification topic; JobNotificationTopic
	// gets the job-completion messages of jobs this session started. Both
	// are new for every session.
	NotificationTopic    string
	JobNotificationTopic string
	OpenedAt             time.Time
	// ClosedAt is zero while the session is valid.
	ClosedAt    time.Time
	CloseReason CloseReason
}

// Open reports whether the session is still valid.
func (s SessionInfo) Open() bool { return s.ClosedAt.IsZero() }

// CloseReason says why a session ended.
type CloseReason string

// Why sessions end.
const (
	ClosedByLogoff CloseReason = "logoff"
	// ClosedExpired: idle timeout, lifetime, ExpireSessions or an
	// expire_sessions fault. Its next use answers 403 reason 5.
	ClosedExpired CloseReason = "expired"
)

type session struct {
	info     SessionInfo
	lastUsed time.Time
	// invalidAt is set by ExpireSessions and expire_sessions faults.
	invalidAt time.Time
}

// expiry returns when the session stops being valid, judged at now, and
// whether that has happened.
func (ss *session) expiry(now time.Time, idle, lifetime time.Duration) (time.Time, bool) {
	var at time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && !t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	consider(ss.invalidAt)
	if idle > 0 {
		consider(ss.lastUsed.Add(idle))
	}
	if lifetime > 0 {
		consider(ss.info.OpenedAt.Add(lifetime))
	}
	return at, !at.IsZero()
}

// NoticeKind names what a Notice reports.
type NoticeKind string

// Notice kinds.
const (
	// NoticeJobCompletion: a job ended (complete or canceled). The HMC sends
	// its job-completion message only to the job notification topic of the
	// session that started the job (Notice.Session), if that session is
	// still open.
	NoticeJobCompletion NoticeKind = "job-completion"
	// NoticeSessionOpened: a logon succeeded.
	NoticeSessionOpened NoticeKind = "session-opened"
	// NoticeSessionClosed: a session was logged off or expired; its topics
	// are stale from now on.
	NoticeSessionClosed NoticeKind = "session-closed"
)

// Notice is what the simulator tells its listeners (a STOMP broker, an SSE
// endpoint, a test) when something happens that the HMC would push.
type Notice struct {
	Kind NoticeKind
	// At is when it happened, by the server's clock.
	At time.Time
	// Session is the session concerned: for a job completion the one that
	// started the job (zero when the job was added without one).
	Session SessionInfo
	// JobID, JobURI and Status describe the ended job of a job completion.
	JobID, JobURI, Status string
}

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n random characters of [a-z0-9], the shape of the
// api-session in the vendor's example.
func randomAlnum(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// randomJobID returns an id shaped like the vendor's example job id.
func randomJobID() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 16)
	rand.Read(b)
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0x0f])
	}
	return string(out)
}

// Package huawei owns the Huawei Cloud ServiceStage poller: an IAM token
// obtained by password authentication (X-Subject-Token, 24 h), fetching one
// job's details from GET /v2|v3/{project_id}/cas/jobs/{job_id} with all its
// task pages, parsing the UPPER_CASE (v2) or lower-case (v3) payload, and
// mapping EXECUTION_STATUS and TASK_STATUS to the canonical states. Each
// task is an Observation.Tasks entry keyed by its TASK_ID, so the bridge
// publishes task events beside the job's. Huawei's error envelopes, the
// job-not-found code and the gateway's APIG.0308 throttling are understood
// here. Vendor facts: shared/reference/vendor-apis.md §4. HTTP, retries,
// TLS and token renewal are package pollkit's.
package huawei

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// Vendor is the vendor name in JobRefs and subjects.
const Vendor = "huawei"

// APIVersion selects the job endpoint: /v2/... (UPPER_CASE keys, the
// original) or /v3/... (lower-case keys, newer releases).
type APIVersion string

// The supported API versions.
const (
	APIv2 APIVersion = "v2"
	APIv3 APIVersion = "v3"
)

// Defaults and bounds of the task paging.
const (
	DefaultTaskPageSize = 100
	// MaxTaskPageSize is a guess: Huawei does not document a maximum
	// limit, and 1000 tasks stay well under the default body cap.
	MaxTaskPageSize     = 1000
	DefaultMaxTaskPages = 20
)

// DefaultTokenLifetime is assumed when the IAM answer has no usable
// expires_at; the documented lifetime is 24 h.
const DefaultTokenLifetime = 24 * time.Hour

// Header names of the IAM token exchange.
const (
	subjectTokenHeader = "X-Subject-Token"
	authTokenHeader    = "X-Auth-Token"
)

// Options configure a Poller.
type Options struct {
	// Instance names this ServiceStage endpoint in configuration, logs and
	// errors.
	Instance string
	// BaseURL is the ServiceStage endpoint of the region, e.g.
	// https://servicestage.ap-southeast-1.myhuaweicloud.com. It overrides
	// HTTP.BaseURL.
	BaseURL string
	// IAMURL is the IAM endpoint, without /v3; default
	// https://iam.<Region>.myhuaweicloud.com.
	IAMURL string
	// Region names the region, for the default IAMURL and ProjectName.
	Region string
	// Username, Password and Domain are the IAM user, its password and the
	// account (domain) it belongs to.
	Username string
	Password bridge.Secret
	Domain   string
	// ProjectID is the project in the job URL; the token is scoped to it.
	// When empty the token is scoped by ProjectName, and the project id is
	// taken from IAM's answer.
	ProjectID string
	// ProjectName scopes the token when ProjectID is empty (default
	// Region, the name of a region's default project). With ProjectID set
	// it is only checked against IAM's answer.
	ProjectName string
	// APIVersion is v2 (default) or v3.
	APIVersion APIVersion
	// TaskPageSize is the limit of one task page (default 100).
	TaskPageSize int
	// MaxTaskPages bounds the task pages fetched in one poll (default 20);
	// tasks beyond are not observed, and a warning says so.
	MaxTaskPages int
	// ThrottleMin and ThrottleMax bound the jittered wait before a request
	// throttled with APIG.0308 is resent; default 2 s and 5 s, as Huawei
	// advises. Tests shorten them.
	ThrottleMin, ThrottleMax time.Duration
	// HTTP configures TLS, timeouts, retries and limits of both endpoints.
	// Its Logger and Classify are replaced.
	HTTP pollkit.ClientOptions
	// Logger receives warnings and debug notes; never a secret.
	Logger zerolog.Logger
	// Now stamps ObservedAt and times token renewal; nil means time.Now.
	Now func() time.Time
}

// Poller polls one ServiceStage endpoint. It keeps one IAM token for all
// polls, renews it after two thirds of its lifetime and once when a call is
// refused with 401 (tokens are revoked by password or permission changes),
// and is safe for concurrent use. It implements bridge.Poller and
// bridge.Closer.
type Poller struct {
	instance     string
	username     string
	password     bridge.Secret
	domain       string
	projectID    string
	projectName  string
	version      APIVersion
	pageSize     int
	maxPages     int
	client, iam  *pollkit.Client
	auth         *pollkit.TokenSource
	now          func() time.Time
	log          zerolog.Logger
	tokenRequest []byte
	// pageQuery is the query of a task page without the offset's value,
	// firstPage the query of the first page; jobHeader is sent with every
	// page (pollkit never modifies a request's Header, so polls share it).
	pageQuery, firstPage string
	jobHeader            http.Header
}

var (
	_ bridge.Poller = (*Poller)(nil)
	_ bridge.Closer = (*Poller)(nil)
)

// New checks opts and builds a Poller. It does not contact Huawei: the
// first Poll obtains a token.
func New(opts Options) (*Poller, error) {
	if err := bridge.ValidateName("instance", opts.Instance); err != nil {
		return nil, fmt.Errorf("huawei: %w", err)
	}
	fail := func(format string, args ...any) (*Poller, error) {
		return nil, fmt.Errorf("huawei %s: "+format, append([]any{opts.Instance}, args...)...)
	}
	if opts.BaseURL != "" {
		opts.HTTP.BaseURL = opts.BaseURL
	}
	if opts.Username == "" || opts.Password.IsZero() || opts.Domain == "" {
		return fail("Username, Password and Domain (the account name) are all required for IAM password authentication")
	}
	if opts.IAMURL == "" {
		if opts.Region == "" {
			return fail("give IAMURL (e.g. https://iam.ap-southeast-1.myhuaweicloud.com) or Region")
		}
		opts.IAMURL = "https://iam." + opts.Region + ".myhuaweicloud.com"
	}
	opts.IAMURL = strings.TrimSuffix(strings.TrimSuffix(strings.TrimRight(opts.IAMURL, "/"), "/v3/auth/tokens"), "/v3")
	if opts.ProjectName == "" {
		opts.ProjectName = opts.Region
	}
	if opts.ProjectID == "" && opts.ProjectName == "" {
		return fail("give ProjectID, or ProjectName (or Region) to scope the token by project name")
	}
	if strings.ContainsAny(opts.ProjectID, "/?#% ") {
		return fail("ProjectID %q is not a project id (32 hexadecimal characters, shown under My Credentials > API Credentials)", opts.ProjectID)
	}
	switch opts.APIVersion {
	case "":
		opts.APIVersion = APIv2
	case APIv2, APIv3:
	default:
		return fail("APIVersion %q: want v2 or v3", opts.APIVersion)
	}
	switch {
	case opts.TaskPageSize == 0:
		opts.TaskPageSize = DefaultTaskPageSize
	case opts.TaskPageSize < 1 || opts.TaskPageSize > MaxTaskPageSize:
		return fail("TaskPageSize %d: want 1 to %d", opts.TaskPageSize, MaxTaskPageSize)
	}
	switch {
	case opts.MaxTaskPages == 0:
		opts.MaxTaskPages = DefaultMaxTaskPages
	case opts.MaxTaskPages < 1:
		return fail("MaxTaskPages %d: want at least 1", opts.MaxTaskPages)
	}
	if opts.ThrottleMin <= 0 && opts.ThrottleMax <= 0 {
		opts.ThrottleMin, opts.ThrottleMax = DefaultThrottleMin, DefaultThrottleMax
	}
	if opts.ThrottleMin < 0 || opts.ThrottleMax < opts.ThrottleMin {
		return fail("ThrottleMin %v and ThrottleMax %v: want 0 <= min <= max", opts.ThrottleMin, opts.ThrottleMax)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger.With().Str("vendor", Vendor).Str("instance", opts.Instance).Logger()
	opts.HTTP.Logger = log
	opts.HTTP.Classify = classifier(opts.ThrottleMin, opts.ThrottleMax)
	client, err := pollkit.NewClient(opts.HTTP)
	if err != nil {
		return fail("%w", err)
	}
	iamOpts := opts.HTTP
	iamOpts.BaseURL = opts.IAMURL
	iam, err := pollkit.NewClient(iamOpts)
	if err != nil {
		return fail("IAMURL: %w", err)
	}
	p := &Poller{
		instance:    opts.Instance,
		username:    opts.Username,
		password:    opts.Password,
		domain:      opts.Domain,
		projectID:   opts.ProjectID,
		projectName: opts.ProjectName,
		version:     opts.APIVersion,
		pageSize:    opts.TaskPageSize,
		maxPages:    opts.MaxTaskPages,
		// As url.Values would encode them: keys in order.
		pageQuery: "limit=" + strconv.Itoa(opts.TaskPageSize) + "&offset=",
		firstPage: "limit=" + strconv.Itoa(opts.TaskPageSize) + "&offset=0",
		jobHeader: http.Header{"Content-Type": {"application/json;charset=utf8"}},
		client:    client,
		iam:       iam,
		now:       opts.Now,
		log:       log,
	}
	p.auth, err = pollkit.NewTokenSource(pollkit.TokenSourceOptions{
		Name:   fmt.Sprintf("huawei/%s IAM user %s of account %s", opts.Instance, opts.Username, opts.Domain),
		Login:  p.login,
		Apply:  pollkit.ApplyHeader(authTokenHeader, ""),
		Now:    opts.Now,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// tokenBody is the IAM password-authentication request (Keystone v3).
type tokenBody struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   struct {
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID   string `json:"id,omitempty"`
				Name string `json:"name,omitempty"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

// login runs POST <iam>/v3/auth/tokens. The password goes only into the
// request body, which nothing logs; the token comes back in the
// X-Subject-Token header, its expiry in the body.
func (p *Poller) login(ctx context.Context) (pollkit.Token, error) {
	var tb tokenBody
	tb.Auth.Identity.Methods = []string{"password"}
	tb.Auth.Identity.Password.User.Name = p.username
	tb.Auth.Identity.Password.User.Password = p.password.Reveal()
	tb.Auth.Identity.Password.User.Domain.Name = p.domain
	if p.projectID != "" {
		tb.Auth.Scope.Project.ID = p.projectID
	} else {
		tb.Auth.Scope.Project.Name = p.projectName
	}
	body, err := json.Marshal(tb)
	if err != nil {
		return pollkit.Token{}, err
	}
	started := p.now()
	resp, err := p.iam.Do(ctx, pollkit.Request{
		Method:     http.MethodPost,
		Path:       "/v3/auth/tokens",
		Header:     http.Header{"Content-Type": {"application/json;charset=utf8"}},
		Body:       body,
		Idempotent: true,
	})
	if err != nil {
		return pollkit.Token{}, fmt.Errorf("IAM token request: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return pollkit.Token{}, p.loginError(resp)
	}
	value := resp.Header.Get(subjectTokenHeader)
	if value == "" {
		return pollkit.Token{}, fmt.Errorf("IAM answered the token request with HTTP %d but no %s header: check that the IAM URL is the IAM endpoint (https://iam.<region>.myhuaweicloud.com), not a proxy",
			resp.StatusCode, subjectTokenHeader)
	}
	info := parseTokenBody(resp.Body)
	tok := pollkit.Token{Value: bridge.NewSecret(value), Extra: map[string]string{}}
	// The lifetime (expires_at - issued_at) is added to our own clock, so a
	// skew between IAM's clock and ours does not move the renewal.
	switch {
	case !info.expires.IsZero() && !info.issued.IsZero() && info.expires.After(info.issued):
		tok.Expiry = started.Add(info.expires.Sub(info.issued))
	case !info.expires.IsZero():
		tok.Expiry = info.expires
	default:
		tok.Expiry = started.Add(DefaultTokenLifetime)
		p.log.Warn().Msg("the IAM token answer has no usable token.expires_at; assuming the documented 24 h lifetime")
	}
	projectID := p.projectID
	switch {
	case projectID == "" && info.projectID == "":
		return pollkit.Token{}, fmt.Errorf("%w: the IAM token scoped to project %q names no project id: set options.projectID", bridge.ErrAuth, p.projectName)
	case projectID == "":
		projectID = info.projectID
	case info.projectID != "" && info.projectID != projectID:
		return pollkit.Token{}, fmt.Errorf("%w: IAM scoped the token to project %s, not the configured projectID %s", bridge.ErrAuth, info.projectID, projectID)
	}
	if p.projectID != "" && p.projectName != "" && info.projectName != "" && !strings.EqualFold(info.projectName, p.projectName) {
		return pollkit.Token{}, fmt.Errorf("%w: projectID %s is project %q, not %q as auth.project says: make them agree (or leave one out)",
			bridge.ErrAuth, projectID, info.projectName, p.projectName)
	}
	tok.Extra["project_id"] = projectID
	return tok, nil
}

func (p *Poller) loginError(resp *pollkit.Response) error {
	e, ok := parseErrorBody(resp.Body)
	said := ""
	if ok {
		said = " " + e.String()
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: IAM refused the password login of user %q in account %q (HTTP 401%s): check auth.username, auth.password and auth.domain, and that the user is enabled",
			bridge.ErrAuth, p.username, p.domain, said)
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
		scope := "project id " + p.projectID
		if p.projectID == "" {
			scope = "project name " + p.projectName
		}
		return fmt.Errorf("%w: IAM refused the token request for user %q in account %q scoped to %s (HTTP %d%s): check auth.domain, the project (options.projectID or auth.project) and that the user may use that project",
			bridge.ErrAuth, p.username, p.domain, scope, resp.StatusCode, said)
	}
	return fmt.Errorf("IAM token request: %w", pollkit.UnexpectedStatus(resp))
}

type tokenInfo struct {
	issued, expires        time.Time
	projectID, projectName string
}

// parseTokenBody reads what the poller needs of the token body; anything
// missing stays zero, and the caller falls back.
func parseTokenBody(body []byte) tokenInfo {
	var in struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
			IssuedAt  string `json:"issued_at"`
			Project   struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"project"`
		} `json:"token"`
	}
	if pollkit.DecodeJSON(body, &in) != nil {
		return tokenInfo{}
	}
	return tokenInfo{
		issued:      pollkit.ISOTime(in.Token.IssuedAt).Normalized,
		expires:     pollkit.ISOTime(in.Token.ExpiresAt).Normalized,
		projectID:   in.Token.Project.ID,
		projectName: in.Token.Project.Name,
	}
}

// project returns the project id for the job URL: configured, or learned
// from the token.
func (p *Poller) project(ctx context.Context) (string, error) {
	if p.projectID != "" {
		return p.projectID, nil
	}
	tok, err := p.auth.Token(ctx)
	if err != nil {
		return "", err
	}
	return tok.Extra["project_id"], nil
}

// Poll fetches the job with every task page (up to MaxTaskPages). Errors
// wrap bridge.ErrNotFound (SVCSTG.00100429), bridge.ErrMalformed (no usable
// payload, or a request the vendor refuses), or bridge.ErrAuth (credentials
// refused even after a renewal, or no permission); anything else is
// transient. Gateway throttling is retried inside the call.
func (p *Poller) Poll(ctx context.Context, job bridge.JobRef) (bridge.Observation, error) {
	if err := bridge.ValidateJobID(job.ID); err != nil {
		return bridge.Observation{}, fmt.Errorf("huawei %s: %w", p.instance, err)
	}
	projectID, err := p.project(ctx)
	if err != nil {
		return bridge.Observation{}, fmt.Errorf("huawei %s: job %q: %w", p.instance, job.ID, err)
	}
	path := "/" + string(p.version) + "/" + pollkit.EscapePathSegment(projectID) + "/cas/jobs/" + pollkit.EscapePathSegment(job.ID)
	var pages []page
	seen := map[string]bool{}
	offset := 0
	for n := 0; ; n++ {
		if n == p.maxPages {
			p.log.Warn().Str("job", job.ID).Int("pages", n).Int("tasks_seen", len(seen)).Int("task_count", pages[len(pages)-1].taskCount).
				Msg("stopped reading task pages at maxTaskPages; later tasks of this job are not observed: raise taskPageSize or maxTaskPages")
			break
		}
		pg, err := p.fetch(ctx, path, job.ID, offset)
		if err != nil {
			return bridge.Observation{}, fmt.Errorf("huawei %s: %w", p.instance, err)
		}
		pages = append(pages, pg)
		fresh := 0
		for _, t := range pg.tasks {
			if !seen[t.id] {
				seen[t.id] = true
				fresh++
			}
		}
		offset += len(pg.tasks)
		more := len(pg.tasks) == p.pageSize // a full page: maybe more
		if pg.taskCount >= 0 {
			more = offset < pg.taskCount
		}
		// A page of nothing new means the server ignores offset (or the
		// list shrank): asking again would only repeat it.
		if !more || len(pg.tasks) == 0 || fresh == 0 || len(pg.tasks) > p.pageSize {
			break
		}
	}
	return buildObservation(job, pages, p.now()), nil
}

// fetch reads one page of the job's details.
func (p *Poller) fetch(ctx context.Context, path, jobID string, offset int) (page, error) {
	query := p.firstPage
	if offset != 0 {
		query = p.pageQuery + strconv.Itoa(offset)
	}
	resp, err := p.client.Do(ctx, pollkit.Request{
		Path:     path,
		RawQuery: query,
		Header:   p.jobHeader,
		Auth:     p.auth,
	})
	if err != nil {
		return page{}, fmt.Errorf("job %q: %w", jobID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return page{}, jobError(resp, p.instance, jobID)
	}
	pg, notes, err := parsePage(resp.Body)
	if err != nil {
		return page{}, fmt.Errorf("job %q (task offset %d): %w", jobID, offset, err)
	}
	for _, n := range notes {
		p.log.Debug().Str("job", jobID).Msg(n)
	}
	return pg, nil
}

// Close drops the token and idle connections. The token is not revoked: it
// expires on its own, and revoking would need a permission the poller does
// not otherwise need. A later Poll obtains a new one.
func (p *Poller) Close(context.Context) error {
	p.auth.Forget()
	p.client.CloseIdleConnections()
	p.iam.CloseIdleConnections()
	return nil
}

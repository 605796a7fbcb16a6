package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The watch API is a NATS micro service, so any replica answers, requests
// are load-balanced by the queue group, and `nats micro ls/stats` discovers
// it. Authorisation is NATS's: grant publish on WatchSubjectPrefix.* only to
// the accounts that may register jobs.

// WatchSubjectPrefix prefixes the watch API's request subjects:
// jobbridge.watch.add, .remove, .get, .list.
const WatchSubjectPrefix = "jobbridge.watch"

// errNotUTF8 refuses a request with bytes that are not UTF-8: encoding/json
// would replace them with U+FFFD and act on another job id than meant.
const errNotUTF8 = "request is not UTF-8 JSON: send job ids as UTF-8 text"

// MaxWatchRequestBytes bounds a watch API request body.
const MaxWatchRequestBytes = 64 << 10

// semver is what micro accepts as a service version.
var semver = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// WatchRequest is the body of add, remove and get.
type WatchRequest struct {
	Watch
}

// WatchResponse answers add, get and remove.
type WatchResponse struct {
	Watch   Watch `json:"watch"`
	Created bool  `json:"created,omitempty"`
}

// ListResponse answers list.
type ListResponse struct {
	Watches []Watch `json:"watches"`
	Next    string  `json:"next,omitempty"`
}

// InstanceChecker tells whether a vendor instance is configured, so that a
// watch for a typo is refused instead of silently never polled.
type InstanceChecker func(vendor, instance string) error

// WatchService serves the registry over NATS request/reply.
type WatchService struct {
	reg   *Registry
	check InstanceChecker
	svc   micro.Service
}

// StartWatchService registers the micro service on nc.
func StartWatchService(nc *nats.Conn, name, version string, reg *Registry, check InstanceChecker) (*WatchService, error) {
	if name == "" {
		name = "jobbridge-watch"
	}
	if !semver.MatchString(version) {
		version = "0.0.0-dev"
	}
	ws := &WatchService{reg: reg, check: check}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        name,
		Version:     version,
		Description: "Register the vendor jobs jobbridge watches",
	})
	if err != nil {
		return nil, fmt.Errorf("start watch API service: %w", err)
	}
	g := svc.AddGroup(WatchSubjectPrefix)
	for _, ep := range []struct {
		name string
		h    func(context.Context, micro.Request)
	}{{"add", ws.add}, {"remove", ws.remove}, {"get", ws.get}, {"list", ws.list}} {
		h := ep.h
		if err := g.AddEndpoint(ep.name, micro.HandlerFunc(func(r micro.Request) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if len(r.Data()) > MaxWatchRequestBytes {
				_ = r.Error("413", fmt.Sprintf("request is %d bytes; at most %d are accepted", len(r.Data()), MaxWatchRequestBytes), nil)
				return
			}
			if !utf8.Valid(r.Data()) {
				_ = r.Error("400", errNotUTF8, nil)
				return
			}
			h(ctx, r)
		})); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("watch API endpoint %s: %w", ep.name, err)
		}
	}
	// The endpoints' subscriptions travel to the server asynchronously; a
	// client that calls right after this returns (from another account,
	// through a service import) would get "no responders" until they
	// arrive. Best effort: a connection that is down re-sends them when it
	// is back.
	_ = nc.FlushTimeout(5 * time.Second)
	ws.svc = svc
	return ws, nil
}

// Stop ends the service.
func (ws *WatchService) Stop() error { return ws.svc.Stop() }

func decodeWatch(r micro.Request) (Watch, bool) {
	var req WatchRequest
	if err := json.Unmarshal(r.Data(), &req); err != nil {
		_ = r.Error("400", "request is not a JSON watch ({\"vendor\",\"instance\",\"job\"}): "+err.Error(), nil)
		return Watch{}, false
	}
	if err := req.Watch.Ref().Validate(); err != nil {
		_ = r.Error("400", err.Error(), nil)
		return Watch{}, false
	}
	return req.Watch, true
}

func (ws *WatchService) add(ctx context.Context, r micro.Request) {
	w, ok := decodeWatch(r)
	if !ok {
		return
	}
	if ws.check != nil {
		if err := ws.check(w.Vendor, w.Instance); err != nil {
			_ = r.Error("404", err.Error(), nil)
			return
		}
	}
	if w.Origin == "" {
		w.Origin = "api"
	}
	w.AddedAt = time.Time{}
	stored, created, err := ws.reg.Add(ctx, w)
	if err != nil {
		_ = r.Error(codeFor(err), err.Error(), nil)
		return
	}
	_ = r.RespondJSON(WatchResponse{Watch: stored, Created: created})
}

func (ws *WatchService) remove(ctx context.Context, r micro.Request) {
	w, ok := decodeWatch(r)
	if !ok {
		return
	}
	if err := ws.reg.Remove(ctx, w.Ref()); err != nil {
		_ = r.Error(codeFor(err), err.Error(), nil)
		return
	}
	_ = r.RespondJSON(WatchResponse{Watch: w})
}

func (ws *WatchService) get(ctx context.Context, r micro.Request) {
	w, ok := decodeWatch(r)
	if !ok {
		return
	}
	got, err := ws.reg.Get(ctx, w.Ref())
	if err != nil {
		_ = r.Error(codeFor(err), err.Error(), nil)
		return
	}
	_ = r.RespondJSON(WatchResponse{Watch: got})
}

func (ws *WatchService) list(ctx context.Context, r micro.Request) {
	var f ListFilter
	if len(r.Data()) > 0 {
		if err := json.Unmarshal(r.Data(), &f); err != nil {
			_ = r.Error("400", "list filter is not JSON: "+err.Error(), nil)
			return
		}
	}
	ws2, next, err := ws.reg.List(ctx, f)
	if err != nil {
		_ = r.Error(codeFor(err), err.Error(), nil)
		return
	}
	if ws2 == nil {
		ws2 = []Watch{}
	}
	_ = r.RespondJSON(ListResponse{Watches: ws2, Next: next})
}

func codeFor(err error) string {
	if errors.Is(err, ErrWatchNotFound) {
		return "404"
	}
	if isValidation(err) {
		return "400"
	}
	return "500"
}

// isValidation tells validation failures (the caller's fault) from storage
// failures (ours).
func isValidation(err error) bool {
	var v validationError
	return errors.As(err, &v)
}

type validationError struct{ error }

func (v validationError) Unwrap() error { return v.error }

// WatchClient calls the watch API.
type WatchClient struct {
	NC      *nats.Conn
	Timeout time.Duration
}

// APIError is an error answer from the watch API.
type APIError struct {
	Code        string
	Description string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Description }

func (c WatchClient) call(ctx context.Context, op string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.NC.RequestWithContext(ctx, WatchSubjectPrefix+"."+op, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no jobbridge answers on %s.%s: is a bridge running against this NATS, with watchAPI enabled?", WatchSubjectPrefix, op)
	}
	if err != nil {
		return fmt.Errorf("watch API %s: %w", op, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &APIError{Code: code, Description: msg.Header.Get(micro.ErrorHeader)}
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("watch API %s: bad answer: %w", op, err)
	}
	return nil
}

// Add registers a watch.
func (c WatchClient) Add(ctx context.Context, w Watch) (WatchResponse, error) {
	var resp WatchResponse
	err := c.call(ctx, "add", WatchRequest{Watch: w}, &resp)
	return resp, err
}

// Remove ends a watch.
func (c WatchClient) Remove(ctx context.Context, job JobRef) error {
	var resp WatchResponse
	return c.call(ctx, "remove", WatchRequest{Watch: Watch{Vendor: job.Vendor, Instance: job.Instance, Job: job.ID}}, &resp)
}

// Get reads a watch.
func (c WatchClient) Get(ctx context.Context, job JobRef) (Watch, error) {
	var resp WatchResponse
	err := c.call(ctx, "get", WatchRequest{Watch: Watch{Vendor: job.Vendor, Instance: job.Instance, Job: job.ID}}, &resp)
	return resp.Watch, err
}

// List pages through watches.
func (c WatchClient) List(ctx context.Context, f ListFilter) (ListResponse, error) {
	var resp ListResponse
	err := c.call(ctx, "list", f, &resp)
	return resp, err
}

package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// The watch API over HTTP: the same registry as the NATS service, so any
// replica answers. Routes (job ids may hold '/', percent-encode them):
//
//	POST   /v1/watches                          body: a Watch; 201 created, 200 if already watched
//	GET    /v1/watches/{vendor}/{instance}/{job}
//	DELETE /v1/watches/{vendor}/{instance}/{job}
//	GET    /v1/watches?vendor=&instance=&limit=&cursor=   paged; "next" is the following cursor
//
// Authentication is the caller's business (the ops server wraps it in its
// bearer-token check). Errors are JSON {"error": "..."} with 400 for bad
// input, 404 for an unknown job or instance, 413 for a body over
// MaxWatchRequestBytes.

// HTTPError is the body of an error answer.
type HTTPError struct {
	Error string `json:"error"`
}

// WatchHTTPHandler returns the HTTP watch API on reg. check refuses
// watches for instances no replica is configured for (nil: no check).
func WatchHTTPHandler(reg *Registry, check InstanceChecker) http.Handler {
	h := &watchHTTP{reg: reg, check: check}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/watches", h.add)
	mux.HandleFunc("GET /v1/watches", h.list)
	mux.HandleFunc("GET /v1/watches/{vendor}/{instance}/{job...}", onJob(h.reg.Get))
	mux.HandleFunc("DELETE /v1/watches/{vendor}/{instance}/{job...}", onJob(h.remove))
	return mux
}

type watchHTTP struct {
	reg   *Registry
	check InstanceChecker
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, HTTPError{Error: msg})
}

func httpCode(err error) int {
	switch {
	case errors.Is(err, ErrWatchNotFound):
		return http.StatusNotFound
	case isValidation(err):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

func requestCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

func (h *watchHTTP) add(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWatchRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxWatchRequestBytes))
			return
		}
		writeErr(w, http.StatusBadRequest, "cannot read the request body: "+err.Error())
		return
	}
	if !utf8.Valid(raw) {
		// encoding/json would turn bad bytes into U+FFFD and register a
		// watch for another job id than the caller meant.
		writeErr(w, http.StatusBadRequest, errNotUTF8)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var wt Watch
	if err := dec.Decode(&wt); err != nil {
		writeErr(w, http.StatusBadRequest, "body is not a JSON watch ({\"vendor\",\"instance\",\"job\", options}): "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, "body holds more than one JSON value")
		return
	}
	if err := wt.Ref().Validate(); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if h.check != nil {
		if err := h.check(wt.Vendor, wt.Instance); err != nil {
			writeErr(w, http.StatusNotFound, err.Error())
			return
		}
	}
	if wt.Origin == "" {
		wt.Origin = "api"
	}
	wt.AddedAt = time.Time{}
	ctx, cancel := requestCtx(r)
	defer cancel()
	stored, created, err := h.reg.Add(ctx, wt)
	if err != nil {
		writeErr(w, httpCode(err), err.Error())
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, WatchResponse{Watch: stored, Created: created})
}

func pathJob(r *http.Request) (JobRef, error) {
	job := JobRef{Vendor: r.PathValue("vendor"), Instance: r.PathValue("instance"), ID: r.PathValue("job")}
	return job, job.Validate()
}

// onJob handles a request about one job named by the path: the job is
// validated before op runs, and op's watch is the answer.
func onJob(op func(ctx context.Context, job JobRef) (Watch, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		job, err := pathJob(r)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		got, err := op(ctx, job)
		if err != nil {
			writeErr(w, httpCode(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, WatchResponse{Watch: got})
	}
}

func (h *watchHTTP) remove(ctx context.Context, job JobRef) (Watch, error) {
	if err := h.reg.Remove(ctx, job); err != nil {
		return Watch{}, err
	}
	return Watch{Vendor: job.Vendor, Instance: job.Instance, Job: job.ID}, nil
}

func (h *watchHTTP) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := ListFilter{Vendor: q.Get("vendor"), Instance: q.Get("instance"), After: q.Get("cursor")}
	if f.Instance != "" && f.Vendor == "" {
		writeErr(w, http.StatusBadRequest, "instance needs vendor")
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeErr(w, http.StatusBadRequest, "limit must be a number from 1 to 1000")
			return
		}
		f.Limit = n
	}
	if len(f.After) > 4*MaxLabelBytes {
		writeErr(w, http.StatusBadRequest, "cursor too long: pass the \"next\" of the previous page")
		return
	}
	ctx, cancel := requestCtx(r)
	defer cancel()
	ws, next, err := h.reg.List(ctx, f)
	if err != nil {
		writeErr(w, httpCode(err), err.Error())
		return
	}
	if ws == nil {
		ws = []Watch{}
	}
	writeJSON(w, http.StatusOK, ListResponse{Watches: ws, Next: next})
}

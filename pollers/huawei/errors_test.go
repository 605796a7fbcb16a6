package huawei

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

func TestParseErrorBodyEnvelopes(t *testing.T) {
	for _, c := range []struct {
		body       string
		code, msg  string
		recognised bool
	}{
		{`{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`, "SVCSTG.00100429", "job not found", true},
		{`{"error_msg":"The throttling threshold has been reached","error_code":"APIG.0308","request_id":"abc"}`, "APIG.0308", "The throttling threshold has been reached", true},
		{`{"error":{"code":"SVCSTG.00100429","message":"job not found"}}`, "SVCSTG.00100429", "job not found", true},
		{`{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}`, "401", "The username or password is wrong.", true},
		{`{"errorCode":"SVCSTG.00100400","errorMessage":"Invalid parameter","detail":"limit"}`, "SVCSTG.00100400", "Invalid parameter", true},
		{`{"ERROR_CODE":"APIG.0308"}`, "APIG.0308", "", true},
		{`{"error":"boom"}`, "", "", false},
		{`{"error":{}}`, "", "", false},
		{`{"job":{}}`, "", "", false},
		{`{"error_code":null}`, "", "", false},
		{`<html>`, "", "", false},
		{``, "", "", false},
		{`[1]`, "", "", false},
	} {
		e, ok := parseErrorBody([]byte(c.body))
		if ok != c.recognised || e.Code != c.code || e.Message != c.msg {
			t.Errorf("%s: %+v %v, want %q %q %v", c.body, e, ok, c.code, c.msg, c.recognised)
		}
	}
	long := `{"error_code":"X","error_msg":"` + strings.Repeat("a", 10000) + `"}`
	if e, _ := parseErrorBody([]byte(long)); len(e.Message) > maxErrorText+8 {
		t.Errorf("message of %d bytes kept", len(e.Message))
	}
}

func resp(code int, body string) *pollkit.Response {
	return &pollkit.Response{StatusCode: code, Body: []byte(body), Header: http.Header{}, Method: "GET", Path: "/v2/p/cas/jobs/j"}
}

func TestClassifier(t *testing.T) {
	c := classifier(2*time.Second, 5*time.Second)
	for range 50 {
		v := c(resp(429, `{"error_code":"APIG.0308","error_msg":"throttled"}`))
		if !v.Retry || v.Delay < 2*time.Second || v.Delay >= 5*time.Second || !strings.Contains(v.Reason, "APIG.0308") {
			t.Fatalf("throttled: %+v", v)
		}
	}
	// The gateway's code decides, whatever status carries it.
	if v := c(resp(403, `{"error":{"code":"APIG.0308","message":"x"}}`)); !v.Retry || v.Delay < 2*time.Second {
		t.Errorf("throttled in 403: %+v", v)
	}
	for _, r := range []*pollkit.Response{
		resp(404, `{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`),
		resp(500, `{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`),
		resp(400, `{"error_code":"SVCSTG.00100400"}`),
		resp(401, `{"error_code":"APIG.0301"}`),
		resp(200, `{"error_code":"APIG.0308"}`),
	} {
		if v := c(r); v.Retry {
			t.Errorf("%d %s retried: %+v", r.StatusCode, r.Body, v)
		}
	}
	if v := c(resp(503, `<html>`)); !v.Retry || v.Delay != 0 {
		t.Errorf("503 not left to the default backoff: %+v", v)
	}
	if v := c(resp(429, `{}`)); !v.Retry {
		t.Errorf("plain 429 not retried: %+v", v)
	}
	if d := jitter(time.Second, time.Second); d != time.Second {
		t.Errorf("jitter of an empty range: %v", d)
	}
}

func TestJobErrorMapping(t *testing.T) {
	for _, c := range []struct {
		code int
		body string
		want error // nil: transient
		says string
	}{
		{404, `{"error_code":"SVCSTG.00100429","error_msg":"job not found"}`, bridge.ErrNotFound, "SVCSTG.00100429"},
		{404, `{"error":{"code":"SVCSTG.00100429","message":"job not found"}}`, bridge.ErrNotFound, "job not found"},
		{404, `{"errorCode":"svcstg.00100429","errorMessage":"job not found"}`, bridge.ErrNotFound, "never existed"},
		{404, `{"error_code":"APIG.0101","error_msg":"The API does not exist"}`, bridge.ErrMalformed, "apiVersion"},
		{404, `not json`, bridge.ErrMalformed, "check url"},
		{400, `{"error_code":"SVCSTG.00100400","error_msg":"Invalid parameter"}`, bridge.ErrMalformed, "Invalid parameter"},
		{400, `{"error_code":"SVCSTG.00100414","error_msg":"job id can not empty"}`, bridge.ErrMalformed, "SVCSTG.00100414"},
		{403, `{"error_code":"APIG.0302","error_msg":"not authorized"}`, bridge.ErrAuth, "ReadOnlyAccess"},
		{415, `{}`, bridge.ErrMalformed, "refused"},
		{409, `{}`, nil, "HTTP 409"},
		{500, `{"error_code":"SVCSTG.00100500"}`, nil, "server error"},
		{302, ``, nil, "redirect"},
	} {
		err := jobError(resp(c.code, c.body), "ap", "j")
		for _, sentinel := range []error{bridge.ErrNotFound, bridge.ErrMalformed, bridge.ErrAuth} {
			if errors.Is(err, sentinel) != (sentinel == c.want) {
				t.Errorf("%d %s: err %v; want %v", c.code, c.body, err, c.want)
			}
		}
		if !strings.Contains(err.Error(), c.says) {
			t.Errorf("%d %s: %q does not say %q", c.code, c.body, err, c.says)
		}
	}
}

package pollkit

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
)

// cannedBody is a status payload of typical size.
var cannedBody = []byte(`{"jobId":"j1mission","messages":["Created tracks layers for location awareness."],"startTime":1795469816305,"endTime":0,"type":"addMission","status":"EXECUTING","username":"admin","customAttributes":{"stepsCompleted":1,"isCancelled":false,"missionId":"ef853450db00048cee7222c9dea1a2c9","messageCodes":[1500],"totalSteps":5}}`)

// cannedTransport answers every request at once with cannedBody, so the
// benchmarks below measure the client's own work, not a network.
type cannedTransport struct{ chunked bool }

func (c cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := int64(len(cannedBody))
	if c.chunked {
		n = -1
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(cannedBody)),
		ContentLength: n,
		Request:       req,
	}, nil
}

// BenchmarkClientDo measures one authenticated GET with a query through Do,
// against a transport that answers at once: the per-request cost pollkit
// adds on the poll path. BenchmarkBareRequest is the same exchange with
// nothing but net/http, for comparison.
func BenchmarkClientDo(b *testing.B) {
	for _, chunked := range []bool{false, true} {
		b.Run("chunked="+strconv.FormatBool(chunked), func(b *testing.B) {
			c, err := NewClient(ClientOptions{
				BaseURL:       "https://vendor.example.com:8443/api",
				WrapTransport: func(http.RoundTripper) http.RoundTripper { return cannedTransport{chunked: chunked} },
				MaxConcurrent: 4,
			})
			if err != nil {
				b.Fatal(err)
			}
			auth, err := NewTokenSource(TokenSourceOptions{
				Login: func(context.Context) (Token, error) { return Token{Value: bridge.NewSecret("t0ken-value")}, nil },
				Apply: ApplyHeader("X-API-Session", ""),
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req := Request{Path: "/jobs/" + EscapePathSegment("job 42"), Query: url.Values{"f": {"json"}}, Auth: auth}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Do(ctx, req)
				if err != nil || len(resp.Body) != len(cannedBody) {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}

func BenchmarkBareRequest(b *testing.B) {
	hc := &http.Client{Transport: cannedTransport{}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://vendor.example.com:8443/api/jobs/job%2042?f=json", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("X-API-Session", "t0ken-value")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(body) != len(cannedBody) {
			b.Fatal(err)
		}
	}
}

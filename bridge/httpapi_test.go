package bridge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/bridgetest"
	"github.com/jobbridge/jobbridge/bridge/natsconn/natstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func doJSON(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func TestHTTPWatchAPI(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	h := startBridge(t, natstest.Connect(t, s), p, nil)
	srv := httptest.NewServer(bridge.WatchHTTPHandler(h.b.Registry(), h.b.CheckInstance))
	defer srv.Close()
	base := srv.URL + "/v1/watches"
	hostile := "job 1/with.dots*and>"
	p.Set(hostile, bridge.StateRunning, "ASSIGNED")

	code, body := doJSON(t, "POST", base, fmt.Sprintf(`{"vendor":"fake","instance":"test","job":%q,"labels":{"team":"ops"},"interval":"1s"}`, hostile))
	require.Equal(t, http.StatusCreated, code, body)
	assert.Equal(t, true, body["created"])
	code, body = doJSON(t, "POST", base, fmt.Sprintf(`{"vendor":"fake","instance":"test","job":%q,"labels":{"team":"ops"},"interval":"1s"}`, hostile))
	assert.Equal(t, http.StatusOK, code, "adding twice is idempotent: %v", body)
	got := h.WaitEvents(hostile, 1, 30*time.Second)
	assert.Equal(t, map[string]string{"team": "ops"}, got[0].Data.Labels)

	jobURL := base + "/fake/test/" + url.PathEscape(hostile)
	code, body = doJSON(t, "GET", jobURL, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, hostile, body["watch"].(map[string]any)["job"])
	assert.Equal(t, "1s", body["watch"].(map[string]any)["interval"])

	// Paging: five watches, two per page.
	for i := 0; i < 4; i++ {
		code, _ := doJSON(t, "POST", base, fmt.Sprintf(`{"vendor":"fake","instance":"test","job":"page-%d"}`, i))
		require.Equal(t, http.StatusCreated, code)
	}
	var all []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		code, body := doJSON(t, "GET", base+"?vendor=fake&instance=test&limit=2&cursor="+url.QueryEscape(cursor), "")
		require.Equal(t, http.StatusOK, code, body)
		ws := body["watches"].([]any)
		assert.LessOrEqual(t, len(ws), 2)
		for _, w := range ws {
			all = append(all, w.(map[string]any)["job"].(string))
		}
		next, _ := body["next"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	assert.ElementsMatch(t, []string{hostile, "page-0", "page-1", "page-2", "page-3"}, all)

	code, _ = doJSON(t, "DELETE", jobURL, "")
	assert.Equal(t, http.StatusOK, code)
	code, body = doJSON(t, "GET", jobURL, "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body["error"], "not watched")
	code, _ = doJSON(t, "DELETE", jobURL, "")
	assert.Equal(t, http.StatusNotFound, code)

	for _, tc := range []struct {
		name, method, url, body string
		want                    int
	}{
		{"not JSON", "POST", base, `{"vendor":`, 400},
		{"unknown field", "POST", base, `{"vendor":"fake","instance":"test","job":"x","intervall":"1s"}`, 400},
		{"two values", "POST", base, `{"vendor":"fake","instance":"test","job":"x"}{}`, 400},
		{"no job", "POST", base, `{"vendor":"fake","instance":"test"}`, 400},
		{"bad interval", "POST", base, `{"vendor":"fake","instance":"test","job":"x","interval":"1ms"}`, 400},
		{"invalid UTF-8", "POST", base, "{\"vendor\":\"fake\",\"instance\":\"test\",\"job\":\"a\xffb\"}", 400},
		{"control character", "POST", base, `{"vendor":"fake","instance":"test","job":"a\u0001b"}`, 400},
		{"unknown instance", "POST", base, `{"vendor":"fake","instance":"nope","job":"x"}`, 404},
		{"huge", "POST", base, `{"vendor":"fake","instance":"test","job":"x","labels":{"k":"` + strings.Repeat("v", bridge.MaxWatchRequestBytes) + `"}}`, 413},
		{"bad limit", "GET", base + "?limit=0", "", 400},
		{"instance without vendor", "GET", base + "?instance=test", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := doJSON(t, tc.method, tc.url, tc.body)
			assert.Equal(t, tc.want, code, "%v", body)
			assert.NotEmpty(t, body["error"])
		})
	}
}

// TestPerWatchOptions checks each option a watch carries: its own poll
// interval, a deadline, a stalled bound, labels in the event data.
func TestPerWatchOptions(t *testing.T) {
	s := natstest.RunServer(t, natstest.Options{})
	p := bridgetest.NewPoller()
	h := startBridge(t, natstest.Connect(t, s), p, func(o *bridge.Options) {
		// The instance polls hourly: only a watch's own interval polls faster.
		o.Schedule = bridge.ScheduleOptions{Interval: time.Hour, FastInterval: time.Hour, IdleInterval: time.Hour, Workers: 4, RetainAfterTerminal: time.Hour}
	})
	add := func(w bridge.Watch) {
		w.Vendor, w.Instance = "fake", "test"
		_, _, err := h.b.Registry().Add(t.Context(), w)
		require.NoError(t, err)
	}
	for _, id := range []string{"fast", "slow", "late", "stuck", "plain"} {
		p.Set(id, bridge.StateRunning, "ASSIGNED")
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	add(bridge.Watch{Job: "fast", Interval: bridge.Duration(100 * time.Millisecond)})
	add(bridge.Watch{Job: "slow"})
	add(bridge.Watch{Job: "late", Interval: bridge.Duration(100 * time.Millisecond), Deadline: &deadline, Labels: map[string]string{"route": "ops-team"}})
	add(bridge.Watch{Job: "stuck", Interval: bridge.Duration(100 * time.Millisecond), StalledAfter: bridge.Duration(300 * time.Millisecond)})
	add(bridge.Watch{Job: "plain", Interval: bridge.Duration(100 * time.Millisecond)})

	bridgetest.WaitFor(t, 30*time.Second, "the fast watch polled often", func() bool { return p.Polls("fast") >= 5 })
	assert.LessOrEqual(t, p.Polls("slow"), 1, "a watch without its own interval keeps the instance's hourly one")

	late := h.WaitEvents("late", 2, 30*time.Second)
	assert.Equal(t, []string{"transition:running", "deadline_missed:running"}, bridgetest.Summary(late))
	for _, e := range late {
		assert.Equal(t, map[string]string{"route": "ops-team"}, e.Data.Labels, "labels copied into every event")
	}
	assert.Equal(t, `"ops-team"`, string(mustJSON(t, late[1].Event["data"].(map[string]any)["labels"].(map[string]any)["route"])))

	stuck := h.WaitEvents("stuck", 2, 30*time.Second)
	assert.Equal(t, []string{"transition:running", "stalled:running"}, bridgetest.Summary(stuck))

	// The same quiet spell on a watch without a bound or deadline: nothing.
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, []string{"transition:running"}, bridgetest.Summary(h.EventsFor("plain")))
	assert.Len(t, h.EventsFor("late"), 2, "deadline_missed is sent once")
	assert.Len(t, h.EventsFor("stuck"), 2, "stalled is sent once per quiet spell")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

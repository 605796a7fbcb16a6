package pollkit

import (
	"errors"
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
)

func TestStateTableLookup(t *testing.T) {
	tab := MustStateTable(
		Row{Native: "IN_PROGRESS", State: bridge.StateRunning},
		Row{Native: "PAUSED", State: bridge.StateRunning, SubState: "paused"},
		Row{Native: "cancel-pending", State: bridge.StateRunning, SubState: "cancelling"},
	)
	cases := []struct {
		in   string
		want Mapping
		ok   bool
	}{
		{"IN_PROGRESS", Mapping{State: bridge.StateRunning}, true},
		{"in_progress", Mapping{State: bridge.StateRunning}, true},
		{"  In_Progress\t\n", Mapping{State: bridge.StateRunning}, true},
		{"Paused", Mapping{State: bridge.StateRunning, SubState: "paused"}, true},
		{"CANCEL-PENDING", Mapping{State: bridge.StateRunning, SubState: "cancelling"}, true},
		{"IN PROGRESS", Mapping{State: bridge.StateUnknown}, false},
		{"", Mapping{State: bridge.StateUnknown}, false},
		{"RUNNING", Mapping{State: bridge.StateUnknown}, false},
	}
	for _, c := range cases {
		if got := tab.Lookup(c.in); got != c.want {
			t.Errorf("Lookup(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if _, ok := tab.Known(c.in); ok != c.ok {
			t.Errorf("Known(%q) ok = %v, want %v", c.in, ok, c.ok)
		}
	}
}

func TestStateTableRejectsBadRows(t *testing.T) {
	bad := [][]Row{
		{{Native: "A", State: bridge.StateRunning}, {Native: " a ", State: bridge.StateFailed}},
		{{Native: "  ", State: bridge.StateRunning}},
		{{Native: "A", State: "done"}},
	}
	for _, rows := range bad {
		if _, err := NewStateTable(rows...); err == nil {
			t.Errorf("NewStateTable(%+v) accepted a bad table", rows)
		}
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("MustStateTable did not panic on a duplicate row")
		}
	}()
	MustStateTable(bad[0]...)
}

func TestStateTableRowsIsACopy(t *testing.T) {
	tab := MustStateTable(Row{Native: "A", State: bridge.StateRunning}, Row{Native: "B", State: bridge.StateFailed})
	rows := tab.Rows()
	if len(rows) != 2 || rows[0].Native != "A" || rows[1].Native != "B" {
		t.Fatalf("Rows = %+v, want table order", rows)
	}
	rows[0].State = bridge.StateSucceeded
	if tab.Lookup("A").State != bridge.StateRunning {
		t.Fatal("changing the result of Rows changed the table")
	}
}

func TestDecodeJSON(t *testing.T) {
	var v struct{ Status string }
	if err := DecodeJSON([]byte(` {"STATUS":"x"} `), &v); err != nil || v.Status != "x" {
		t.Fatalf("DecodeJSON = %v, %+v", err, v)
	}
	for _, c := range []struct{ body, hint string }{
		{"", "empty"},
		{"  \n", "empty"},
		{"<!DOCTYPE html><html><body>Login</body></html>", "HTML"},
		{`{"status":`, "unexpected end"},
		{`{"a":1} trailing`, "invalid character"},
		{`[1,2]`, "cannot unmarshal array"},
	} {
		err := DecodeJSON([]byte(c.body), &v)
		if !errors.Is(err, bridge.ErrMalformed) || !strings.Contains(err.Error(), c.hint) {
			t.Errorf("DecodeJSON(%q) = %v; want ErrMalformed mentioning %q", c.body, err, c.hint)
		}
	}
}

func TestObject(t *testing.T) {
	o, err := DecodeObject([]byte(`{"ProcessName":":A:B","status":"COMPLETED","n":12,"o":{"x": 1},"nul":null,"STATUS2":"u","Status2":"t"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok, err := o.String("processName"); s != ":A:B" || !ok || err != nil {
		t.Errorf("case-folded String = %q %v %v", s, ok, err)
	}
	if s, _, _ := o.String("status2"); s != "u" {
		t.Errorf("ambiguous fold picked %q; want the smallest key's value every time", s)
	}
	if _, ok, err := o.String("missing"); ok || err != nil {
		t.Errorf("missing key: ok %v err %v", ok, err)
	}
	if _, ok, err := o.String("nul"); ok || err != nil {
		t.Errorf("null: ok %v err %v", ok, err)
	}
	if _, _, err := o.String("n"); !errors.Is(err, bridge.ErrMalformed) {
		t.Errorf("number as string: err %v, want ErrMalformed", err)
	}
	if s, ok := o.Text("n"); s != "12" || !ok {
		t.Errorf("Text(number) = %q %v", s, ok)
	}
	if s, ok := o.Text("o"); s != `{"x":1}` || !ok {
		t.Errorf("Text(object) = %q %v", s, ok)
	}
	for _, body := range []string{"null", "[]", `"s"`, "<html>"} {
		if _, err := DecodeObject([]byte(body)); !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("DecodeObject(%s) err = %v, want ErrMalformed", body, err)
		}
	}
}

func TestEscapePathSegment(t *testing.T) {
	cases := map[string]string{
		"abc-DEF_1.2~":     "abc-DEF_1.2~",
		"a/b":              "a%2Fb",
		"q?x#f":            "q%3Fx%23f",
		"50% off":          "50%25%20off",
		"semi;colon":       "semi%3Bcolon",
		"ü":                "%C3%BC",
		"..":               "%2E%2E",
		".":                "%2E",
		"...":              "...",
		":Module:Process":  "%3AModule%3AProcess",
		"a+b&c=d$e,f'g(h)": "a%2Bb%26c%3Dd%24e%2Cf%27g%28h%29",
	}
	for in, want := range cases {
		if got := EscapePathSegment(in); got != want {
			t.Errorf("EscapePathSegment(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSnippet(t *testing.T) {
	if got := Snippet([]byte("  a\n\n b\x00c  "), 100); got != "a b?c" {
		t.Errorf("Snippet = %q", got)
	}
	if got := Snippet([]byte(strings.Repeat("x", 50)), 10); got != "xxxxxxxxxx…" {
		t.Errorf("Snippet cap = %q", got)
	}
}

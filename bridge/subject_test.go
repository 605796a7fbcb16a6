package bridge_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jobbridge/jobbridge/bridge"
)

// subjectTestEscaped is what EscapeToken may produce: never '.', '*', '>', white
// space or '$'.
var subjectTestEscaped = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// subjectTestKVKey is the JetStream KV key syntax (nats.go jetstream/kv.go).
var subjectTestKVKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func TestEscapeToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"J-42", "J-42"},
		{"AbcXYZ-0189", "AbcXYZ-0189"},
		{".", "_2E"},
		{"*", "_2A"},
		{">", "_3E"},
		{" ", "_20"},
		{"\t", "_09"},
		{"/", "_2F"},
		{"_", "_5F"},
		{"%", "_25"},
		{"$SYS", "_24SYS"},
		{"a.b", "a_2Eb"},
		{"jobs.>", "jobs_2E_3E"},
		{"ü", "_C3_BC"},
		{"日本", "_E6_97_A5_E6_9C_AC"},
		{"\x00\xff", "_00_FF"},
		// Looks like an escape; its '_' is escaped, so it cannot collide
		// with the token of ".".
		{"_2E", "_5F2E"},
	} {
		got := bridge.EscapeToken(tc.in)
		if got != tc.want {
			t.Errorf("EscapeToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := bridge.UnescapeToken(got)
		if err != nil || back != tc.in {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestUnescapeTokenRejectsWhatEscapeCannotProduce(t *testing.T) {
	for _, tok := range []string{
		"_2e",   // lower-case hex: EscapeToken writes upper case only
		"a_c3",  // likewise
		"_41",   // 'A' escaped needlessly
		"_2D",   // '-' escaped needlessly
		"_30",   // '0' escaped needlessly
		"_",     // truncated
		"_2",    // truncated
		"ab_",   // truncated at the end
		"ab_4",  // truncated at the end
		"_G0",   // not hex
		"_-1",   // not hex
		"a.b",   // raw separator
		"a b",   // raw space
		"*",     // wildcard
		">",     // wildcard
		"$SYS",  // raw '$'
		"ü",     // raw non-ASCII
		"_2E.x", // valid escape followed by a raw dot
	} {
		got, err := bridge.UnescapeToken(tok)
		if !errors.Is(err, bridge.ErrBadToken) {
			t.Errorf("UnescapeToken(%q) = %q, %v; want ErrBadToken", tok, got, err)
		}
	}
}

func TestValidateJobID(t *testing.T) {
	for _, ok := range []string{
		"J-42",
		"a.b *>/ü $SYS",
		strings.Repeat("a", bridge.MaxJobIDBytes),
		strings.Repeat("é", bridge.MaxJobIDBytes/2), // 256 bytes, 128 runes
		"\u00a0nbsp", // first code point after the C1 block
	} {
		if err := bridge.ValidateJobID(ok); err != nil {
			t.Errorf("ValidateJobID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"",
		strings.Repeat("a", bridge.MaxJobIDBytes+1),
		strings.Repeat("é", bridge.MaxJobIDBytes/2) + "a", // 257 bytes
		"a\x00b",
		"a\tb",
		"line\n",
		"\x1f",
		"del\x7f",
		"c1\u0080",
		"c1\u0085",
		"c1\u009f",
		"\xff",
		"a\xc3",        // truncated sequence
		"\xc0\xa0",     // overlong encoding of space
		"\xed\xa0\x80", // UTF-16 surrogate
	} {
		if err := bridge.ValidateJobID(bad); err == nil {
			t.Errorf("ValidateJobID(%q) accepted", bad)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"hmc", "prod-eu.1", "ümlaut", strings.Repeat("n", bridge.MaxNameBytes)} {
		if err := bridge.ValidateName("instance", ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "tab\t", "\x7f", "\xff", strings.Repeat("n", bridge.MaxNameBytes+1)} {
		if err := bridge.ValidateName("instance", bad); err == nil {
			t.Errorf("ValidateName(%q) accepted", bad)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"jobs", "acme.jobs", "a_b.c-d"} {
		if err := bridge.ValidatePrefix(ok); err != nil {
			t.Errorf("ValidatePrefix(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "jobs.", ".jobs", "a..b", "jobs.*", "jobs.>", "a b", "$SYS", "ü"} {
		if err := bridge.ValidatePrefix(bad); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted", bad)
		}
	}
}

// subjectTestRefs are jobs whose ids would break a naive subject.
var subjectTestRefs = []bridge.JobRef{
	{Vendor: "hmc", Instance: "prod", ID: "J-42"},
	{Vendor: "hmc", Instance: "prod", ID: "a.b"},
	{Vendor: "hmc", Instance: "prod", ID: "a"},
	{Vendor: "hmc", Instance: "prod", ID: "a", Task: "b"},
	{Vendor: "hmc", Instance: "prod", ID: "a.b", Task: "c"},
	{Vendor: "hmc", Instance: "prod", ID: "*"},
	{Vendor: "hmc", Instance: "prod", ID: ">"},
	{Vendor: "hmc", Instance: "prod", ID: "_2E"},
	{Vendor: "hmc", Instance: "prod", ID: "."},
	{Vendor: "arcgis", Instance: "east.1", ID: "jobs/gp/j 1 ü", Task: "t.*"},
	{Vendor: "huawei", Instance: "cn-north", ID: "$SYS.REQ", Task: ">"},
}

func TestSubjectsForParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"jobs", "acme.jobs"} {
		s := bridge.Subjects{Prefix: prefix}
		for _, ref := range subjectTestRefs {
			for _, ev := range []string{"failed", "progress", "deadline_missed"} {
				subj := s.For(ref, ev)
				if !server.IsValidPublishSubject(subj) {
					t.Errorf("For(%v) = %q is not a valid publish subject", ref, subj)
				}
				wantTokens := strings.Count(prefix, ".") + 1 + 4
				if ref.Task != "" {
					wantTokens++
				}
				if got := strings.Count(subj, ".") + 1; got != wantTokens {
					t.Errorf("For(%v) = %q has %d tokens, want %d", ref, subj, got, wantTokens)
				}
				got, gotEv, err := s.Parse(subj)
				if err != nil || got != ref || gotEv != ev {
					t.Errorf("Parse(%q) = %v, %q, %v; want %v, %q", subj, got, gotEv, err, ref, ev)
				}
				if !subjectTestKVKey.MatchString(ref.Key()) {
					t.Errorf("Key(%v) = %q is not a valid KV key", ref, ref.Key())
				}
			}
		}
	}
}

func TestSubjectsParseRejects(t *testing.T) {
	s := bridge.Subjects{Prefix: "jobs"}
	for _, subj := range []string{
		"other.hmc.prod.failed.J",
		"jobsx.hmc.prod.failed.J",
		"jobs.hmc.prod.failed",       // too few tokens
		"jobs.hmc.prod.failed.J.T.X", // too many
		"jobs.hmc.prod.failed.a_2e",  // lower-case escape
		"jobs.hmc.prod.failed.a_",    // truncated escape
		"jobs.hmc.prod.failed.J._41", // needless escape in the task
		"jobs.h%20mc.prod.failed.J",  // not our escaping
		"jobs.hmc.pr od.failed.J",    // raw space
		"jobs.hmc.prod.failed.ü",     // raw non-ASCII
	} {
		if ref, ev, err := s.Parse(subj); err == nil {
			t.Errorf("Parse(%q) = %v, %q; want an error", subj, ref, ev)
		}
	}
}

// TestFiltersSelectOnlyTheirJob checks, with the server's own matcher, that a
// job filter matches the job and its tasks and nothing about any other job,
// however the ids look.
func TestFiltersSelectOnlyTheirJob(t *testing.T) {
	s := bridge.Subjects{Prefix: "jobs"}
	for _, a := range subjectTestRefs {
		subj := s.For(a, "failed")
		for _, b := range subjectTestRefs {
			filters := s.Filters(b.Vendor, b.Instance, "", b.ID)
			matched := false
			for _, f := range filters {
				if !server.IsValidSubject(f) {
					t.Fatalf("Filters(%v) gave invalid subject %q", b, f)
				}
				matched = matched || server.SubjectMatchesFilter(subj, f)
			}
			same := a.Vendor == b.Vendor && a.Instance == b.Instance && a.ID == b.ID
			if matched != same {
				t.Errorf("subject %q of %v vs filters %v of %v: matched=%v", subj, a, filters, b, matched)
			}
		}
	}
	all := s.Filters("", "", "failed", "")
	if len(all) != 1 || all[0] != "jobs.*.*.failed.>" {
		t.Errorf("Filters for every failure = %v", all)
	}
	if !server.SubjectMatchesFilter(s.For(subjectTestRefs[9], "failed"), all[0]) ||
		server.SubjectMatchesFilter(s.For(subjectTestRefs[9], "running"), all[0]) {
		t.Errorf("%q must match failed events only", all[0])
	}
	// An instance filter with a dot in the name must not split into two tokens.
	inst := s.Filters("arcgis", "east.1", "", "")
	if !server.SubjectMatchesFilter(s.For(subjectTestRefs[9], "failed"), inst[0]) ||
		server.SubjectMatchesFilter(s.For(bridge.JobRef{Vendor: "arcgis", Instance: "east", ID: "1"}, "failed"), inst[0]) {
		t.Errorf("instance filter %v", inst)
	}
}

func FuzzEscapeToken(f *testing.F) {
	for _, seed := range [][2]string{
		{"", "a"},
		{".", "_2E"},
		{"a.b", "a_2Eb"},
		{"*", ">"},
		{"$SYS", "_24SYS"},
		{"ü", "\xc3"},
		{"\x00", "_00"},
		{"a b", "a_20b"},
		{"_", "_5F"},
		{"_5F", "__"},
	} {
		f.Add(seed[0], seed[1])
	}
	s := bridge.Subjects{Prefix: "jobs"}
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := bridge.EscapeToken(a), bridge.EscapeToken(b)
		if !subjectTestEscaped.MatchString(ta) {
			t.Fatalf("EscapeToken(%q) = %q holds a byte outside [A-Za-z0-9_-]", a, ta)
		}
		if (ta == "") != (a == "") {
			t.Fatalf("EscapeToken(%q) = %q: empty iff the input is", a, ta)
		}
		if back, err := bridge.UnescapeToken(ta); err != nil || back != a {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", a, back, err)
		}
		if a != b && ta == tb {
			t.Fatalf("%q and %q share the token %q", a, b, ta)
		}
		// The other direction: whatever UnescapeToken accepts is exactly what
		// EscapeToken produces, so a subject read back is canonical.
		if u, err := bridge.UnescapeToken(b); err == nil && bridge.EscapeToken(u) != b {
			t.Fatalf("UnescapeToken(%q) = %q, which escapes to %q", b, u, bridge.EscapeToken(u))
		}
		if a == "" {
			return
		}
		ref := bridge.JobRef{Vendor: "hmc", Instance: "prod", ID: a}
		subj := s.For(ref, "failed")
		if !server.IsValidPublishSubject(subj) {
			t.Fatalf("For(%q) = %q is not a valid publish subject", a, subj)
		}
		if got, ev, err := s.Parse(subj); err != nil || got != ref || ev != "failed" {
			t.Fatalf("Parse(%q) = %v, %q, %v", subj, got, ev, err)
		}
		if !subjectTestKVKey.MatchString(ref.Key()) {
			t.Fatalf("Key() = %q is not a valid KV key", ref.Key())
		}
		for _, filter := range s.Filters("hmc", "prod", "", a) {
			if !server.SubjectMatchesFilter(subj, filter) && !strings.HasSuffix(filter, ".>") {
				t.Fatalf("job %q: own filter %q does not match %q", a, filter, subj)
			}
		}
		if b != "" && b != a {
			for _, filter := range s.Filters("hmc", "prod", "", b) {
				if server.SubjectMatchesFilter(subj, filter) {
					t.Fatalf("subject %q of job %q matches filter %q of job %q", subj, a, filter, b)
				}
			}
		}
	})
}

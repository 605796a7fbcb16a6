package bridge

import (
	"strings"
	"testing"
)

// FuzzSubjectsParse: any string either fails to parse or names a job that
// builds the very same subject again (parsing is the exact inverse of
// For), and every subject For builds from valid parts parses back to
// them, with no wildcard or empty token in it.
func FuzzSubjectsParse(f *testing.F) {
	f.Add("jobs.tso.prod.failed.job-1", "tso", "prod", "job-1", "")
	f.Add("jobs.hmc.prod.succeeded.x_2Ey._3E", "hmc", "p.r*o>d", "a.b", "t 1")
	f.Add("jobs.tso.prod.*.>", "tso", "prod", "*", ">")
	f.Add("jobs.tso.prod.progress.a_2", "tso", "prod", "_2", "")
	f.Add("jobs..prod.failed.j", "", "", " ", "\x00")
	s := Subjects{Prefix: "jobs"}
	f.Fuzz(func(t *testing.T, subject, vendor, instance, id, task string) {
		if job, tok, err := s.Parse(subject); err == nil {
			if again := s.For(job, tok); again != subject {
				t.Fatalf("Parse(%q) = %+v %q, which builds %q", subject, job, tok, again)
			}
		}
		job := JobRef{Vendor: vendor, Instance: instance, ID: id, Task: task}
		if job.Validate() != nil {
			return
		}
		subj := s.For(job, "failed")
		for _, tk := range strings.Split(subj, ".") {
			if tk == "" || tk == "*" || tk == ">" || strings.ContainsAny(tk, " \t\r\n") {
				t.Fatalf("For(%+v) = %q has the token %q", job, subj, tk)
			}
		}
		back, tok, err := s.Parse(subj)
		if err != nil || back != job || tok != "failed" {
			t.Fatalf("Parse(For(%+v)) = %+v %q %v", job, back, tok, err)
		}
	})
}

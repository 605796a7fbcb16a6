package schemas_test

import (
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/schemas"
)

func asyncAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	b, err := fs.ReadFile(schemas.Files(), schemas.AsyncAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", schemas.AsyncAPIFile, err)
	}
	return doc
}

// resolve follows a local "#/a/b" reference within doc.
func resolve(t *testing.T, doc map[string]any, ref string) any {
	t.Helper()
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		t.Fatalf("ref %q is not local", ref)
	}
	var v any = doc
	for _, tok := range strings.Split(p, "/") {
		m, ok := v.(map[string]any)
		if !ok || m[tok] == nil {
			t.Fatalf("ref %q does not resolve at %q", ref, tok)
		}
		v = m[tok]
	}
	return v
}

// walkRefs calls f for every $ref in v.
func walkRefs(v any, f func(ref string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "$ref" {
				f(s)
			}
			walkRefs(e, f)
		}
	case []any:
		for _, e := range x {
			walkRefs(e, f)
		}
	}
}

func TestAsyncAPIRefsResolve(t *testing.T) {
	doc := asyncAPIDoc(t)
	if doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi version %v", doc["asyncapi"])
	}
	n := 0
	walkRefs(doc, func(ref string) {
		n++
		if file, ok := strings.CutPrefix(ref, "./"); ok {
			if _, err := fs.Stat(schemas.Files(), file); err != nil {
				t.Errorf("$ref %q: %v", ref, err)
			}
			return
		}
		resolve(t, doc, ref)
	})
	if n == 0 {
		t.Fatal("no $ref found; the walk is broken")
	}
	for msg, file := range map[string]string{"structured": schemas.EventSchemaFile, "binary": schemas.DataSchemaFile} {
		got := resolve(t, doc, "#/components/messages/"+msg+"/payload/schema/$ref")
		if got != "./"+file {
			t.Errorf("%s payload refers to %v, want ./%s", msg, got, file)
		}
	}
}

// TestAsyncAPIChannelsMatchSubjects checks each channel address against
// subjects bridge builds, and its event parameter against every token
// bridge can put there.
func TestAsyncAPIChannelsMatchSubjects(t *testing.T) {
	doc := asyncAPIDoc(t)
	param := regexp.MustCompile(`^\{([a-z]+)\}$`)
	subjects := bridge.Subjects{Prefix: "jobs"}
	for name, job := range map[string]bridge.JobRef{
		"jobEvents":  {Vendor: "hmc", Instance: "prod", ID: "J.1 ü"},
		"taskEvents": {Vendor: "hmc", Instance: "prod", ID: "J.1 ü", Task: "T*2"},
	} {
		ch := resolve(t, doc, "#/channels/"+name).(map[string]any)
		addr := strings.Split(ch["address"].(string), ".")
		subj := strings.Split(subjects.For(job, string(bridge.StateFailed)), ".")
		if len(addr) != len(subj) {
			t.Errorf("%s: address %v has %d tokens, bridge builds %v", name, addr, len(addr), subj)
			continue
		}
		var params []string
		for i, tok := range addr {
			if m := param.FindStringSubmatch(tok); m != nil {
				params = append(params, m[1])
			} else if tok != subj[i] {
				t.Errorf("%s: literal token %q where bridge puts %q", name, tok, subj[i])
			}
		}
		declared := slices.Sorted(maps.Keys(ch["parameters"].(map[string]any)))
		slices.Sort(params)
		if !slices.Equal(params, declared) {
			t.Errorf("%s: address parameters %v, declared %v", name, params, declared)
		}
	}

	var tokens []string
	for _, s := range bridge.States {
		tokens = append(tokens, bridge.EventToken(bridge.KindTransition, s))
	}
	for _, k := range []bridge.EventKind{bridge.KindProgress, bridge.KindVanished, bridge.KindStalled, bridge.KindDeadlineMissed} {
		tokens = append(tokens, bridge.EventToken(k, bridge.StateRunning))
	}
	var enum []string
	for _, v := range resolve(t, doc, "#/components/parameters/event/enum").([]any) {
		enum = append(enum, v.(string))
	}
	slices.Sort(tokens)
	slices.Sort(enum)
	if !slices.Equal(tokens, enum) {
		t.Errorf("event parameter enum %v, bridge tokens %v", enum, tokens)
	}
}

// TestAsyncAPIHeadersMatchEncoder validates the headers bridge writes
// against the header schemas of the AsyncAPI messages.
func TestAsyncAPIHeadersMatchEncoder(t *testing.T) {
	doc := asyncAPIDoc(t)
	c := jsonschema.NewCompiler()
	const base = "urn:jobbridge:test:asyncapi"
	if err := c.AddResource(base, map[string]any(doc)); err != nil {
		t.Fatal(err)
	}
	for msg, mode := range map[string]bridge.WireMode{"structured": bridge.WireStructured, "binary": bridge.WireBinary} {
		s, err := c.Compile(base + "#/components/messages/" + msg + "/headers")
		if err != nil {
			t.Fatalf("%s headers schema: %v", msg, err)
		}
		ev, err := newEncoder(t, mode, 64).Encode(baseChange())
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]any{
			// Set by the publisher (jetstream.WithMsgID), not the encoder.
			"Nats-Msg-Id": ev.ID,
		}
		for k, v := range ev.Msg.Header {
			h[k] = v[0]
		}
		if err := s.Validate(h); err != nil {
			t.Errorf("%s headers %v: %v", msg, h, err)
		}
		delete(h, "Jobbridge-Sequence")
		if err := s.Validate(h); err == nil {
			t.Errorf("%s headers schema accepts a message without Jobbridge-Sequence", msg)
		}
	}
}

package schemas_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/schemas"
)

var update = flag.Bool("update", false, "rewrite schemas/types/*.json from bridge.EventTypes()")

// typeSchema is the per-type schema: the envelope, with the type fixed and
// the data fields the type implies.
func typeSchema(typ string) []byte {
	rest := strings.TrimPrefix(typ, bridge.TypePrefix) // job.failed, task.progress
	entity, what, _ := strings.Cut(rest, ".")
	data := map[string]any{}
	if bridge.State(what).Valid() {
		data["kind"] = map[string]any{"const": string(bridge.KindTransition)}
		data["state"] = map[string]any{"const": what}
	} else {
		data["kind"] = map[string]any{"const": what}
	}
	dataSchema := map[string]any{"properties": data}
	if entity == "task" {
		dataSchema["required"] = []string{"task"}
	} else {
		dataSchema["not"] = map[string]any{"required": []string{"task"}}
	}
	doc := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         schemas.TypeSchemaID(typ),
		"title":       typ,
		"description": "A jobbridge CloudEvent of type " + typ + " in structured mode: the v1 envelope with this type.",
		"allOf":       []any{map[string]any{"$ref": schemas.EventSchemaID}},
		"properties": map[string]any{
			"type": map[string]any{"const": typ},
			"data": dataSchema,
		},
		"required": []string{"type", "data"},
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// TestTypeSchemasAreCurrent keeps one schema file per event type the code
// can emit, and no other: run with -update after adding a type.
func TestTypeSchemasAreCurrent(t *testing.T) {
	want := map[string]bool{}
	for _, typ := range bridge.EventTypes() {
		name := typ + ".json"
		want[name] = true
		path := filepath.Join("types", name)
		if *update {
			if err := os.WriteFile(path, typeSchema(typ), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(typeSchema(typ)) {
			t.Errorf("%s is missing or stale: run go test ./schemas -run TypeSchemas -update", path)
		}
	}
	entries, _ := os.ReadDir("types")
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("types/%s describes no type the code emits", e.Name())
		}
	}
}

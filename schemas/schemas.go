// Package schemas owns the published event contract of jobbridge: the JSON
// Schemas (draft 2020-12) of the CloudEvents envelope and of its data, and the
// AsyncAPI document of the NATS channels, all embedded so that the binary
// serves exactly the contract it was built with.
//
// The files are the contract; package bridge produces events that follow it,
// and the tests of this package encode events with bridge and validate them
// here. This package does not import bridge, so that bridge (or anything
// else) may validate at run time without an import cycle.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Schema ids and the names of the embedded files that hold them.
const (
	// EventSchemaID is the $id of the structured-mode envelope schema.
	EventSchemaID = "urn:jobbridge:schema:cloudevent:v1"
	// DataSchemaID is the $id of the data schema; every event's dataschema
	// attribute carries it (bridge.DataSchemaURI).
	DataSchemaID = "urn:jobbridge:schema:job-event:v1"

	EventSchemaFile = "job-event-v1.json"
	DataSchemaFile  = "job-event-data-v1.json"
	AsyncAPIFile    = "asyncapi.yaml"
)

//go:embed job-event-v1.json job-event-data-v1.json asyncapi.yaml types/*.json
var files embed.FS

// Files returns the contract files (the two JSON Schemas and the AsyncAPI
// document) for serving or writing out, e.g. with http.FileServerFS.
func Files() fs.FS { return files }

// Validator checks events against the embedded schemas. Compiling the schemas
// costs far more than validating, so build one Validator and keep it; it is
// safe for concurrent use.
type Validator struct {
	event *jsonschema.Schema
	data  *jsonschema.Schema
	types map[string]*jsonschema.Schema // by event type
}

// NewValidator compiles the embedded schemas.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	// Without this, draft 2020-12 treats "format" as an annotation and a
	// malformed time would pass.
	c.AssertFormat()
	names := []string{DataSchemaFile, EventSchemaFile}
	typeFiles, _ := fs.Glob(files, "types/*.json")
	names = append(names, typeFiles...)
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read embedded schema %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("embedded schema %s is not JSON: %w", name, err)
		}
		obj, _ := doc.(map[string]any)
		id, _ := obj["$id"].(string)
		if id == "" {
			return nil, fmt.Errorf("embedded schema %s has no $id", name)
		}
		// Registered under its $id, so that "$ref": "<id>" between the files
		// resolves without a loader (and never over the network).
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("add embedded schema %s: %w", name, err)
		}
	}
	ev, err := c.Compile(EventSchemaID)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", EventSchemaID, err)
	}
	data, err := c.Compile(DataSchemaID)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", DataSchemaID, err)
	}
	v := &Validator{event: ev, data: data, types: map[string]*jsonschema.Schema{}}
	for _, name := range typeFiles {
		typ := strings.TrimSuffix(strings.TrimPrefix(name, "types/"), ".json")
		if v.types[typ], err = c.Compile(TypeSchemaID(typ)); err != nil {
			return nil, fmt.Errorf("compile %s: %w", name, err)
		}
	}
	return v, nil
}

// Types lists the event types that have their own schema.
func (v *Validator) Types() []string {
	out := make([]string, 0, len(v.types))
	for t := range v.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// ValidateEventOfType checks a structured-mode body against the schema of
// one event type (types/<type>.json) and the cross-checks of ValidateEvent.
func (v *Validator) ValidateEventOfType(eventType string, body []byte) error {
	s, ok := v.types[eventType]
	if !ok {
		return fmt.Errorf("no schema for event type %q", eventType)
	}
	id := TypeSchemaID(eventType)
	inst, err := decode(id, body)
	if err != nil {
		return err
	}
	if err := s.Validate(inst); err != nil {
		return schemaError(id, err)
	}
	if probs := crossCheck(inst.(map[string]any)); len(probs) > 0 {
		return &ValidationError{Schema: id, Problems: probs}
	}
	return nil
}

// Problem is one way a document breaks the contract.
type Problem struct {
	// Pointer is the JSON pointer (RFC 6901) of the offending value in the
	// validated document; "" is the document itself. For a missing or
	// unexpected member it points at that member.
	Pointer string
	Message string
}

func (p Problem) String() string {
	ptr := p.Pointer
	if ptr == "" {
		ptr = "(document)"
	}
	return ptr + ": " + p.Message
}

// ValidationError reports every problem found in one document. Use
// errors.As to get at the pointers.
type ValidationError struct {
	// Schema is the $id of the schema the document was checked against.
	Schema   string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("does not match ")
	b.WriteString(e.Schema)
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// ValidateEvent checks a structured-mode message body (a whole CloudEvent in
// JSON) against the envelope schema, the data schema it references, and the
// cross-member rules a JSON Schema cannot state: the extensions repeat
// data's sequence, state, vendor and instance, time is data.detectedAt and
// subject names data's job (and task).
func (v *Validator) ValidateEvent(body []byte) error {
	inst, err := decode(EventSchemaID, body)
	if err != nil {
		return err
	}
	if err := v.event.Validate(inst); err != nil {
		return schemaError(EventSchemaID, err)
	}
	if probs := crossCheck(inst.(map[string]any)); len(probs) > 0 {
		return &ValidationError{Schema: EventSchemaID, Problems: probs}
	}
	return nil
}

// ValidateData checks the data of one event on its own: the message body in
// binary mode, or the data member taken out of a structured event.
func (v *Validator) ValidateData(data []byte) error {
	inst, err := decode(DataSchemaID, data)
	if err != nil {
		return err
	}
	if err := v.data.Validate(inst); err != nil {
		return schemaError(DataSchemaID, err)
	}
	return nil
}

// decode turns a body into the generic value the validator needs. Go's JSON
// decoder silently replaces invalid UTF-8 with U+FFFD, and the NATS binding
// requires UTF-8 JSON text, so that is checked first.
func decode(schema string, body []byte) (any, error) {
	if !utf8.Valid(body) {
		off := 0
		for off < len(body) {
			r, n := utf8.DecodeRune(body[off:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			off += n
		}
		return nil, &ValidationError{Schema: schema, Problems: []Problem{{
			Message: fmt.Sprintf("not valid UTF-8 (byte offset %d); JSON on NATS must be UTF-8 text", off),
		}}}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, &ValidationError{Schema: schema, Problems: []Problem{{Message: "not JSON: " + err.Error()}}}
	}
	return inst, nil
}

// schemaError flattens the library's error tree to its leaves, the only
// nodes that say what is wrong rather than which keyword led there.
func schemaError(schema string, err error) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate against %s: %w", schema, err)
	}
	var probs []Problem
	// at, when set, replaces the instance location of the leaves below: a
	// bad member name is reported at the object, but the member is the news.
	var walk func(e *jsonschema.ValidationError, at string)
	walk = func(e *jsonschema.ValidationError, at string) {
		if k, ok := e.ErrorKind.(*kind.PropertyNames); ok {
			at = pointer(e.InstanceLocation) + "/" + escapeToken(k.Property)
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c, at)
			}
			return
		}
		ptr := pointer(e.InstanceLocation)
		if at != "" {
			ptr = at
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				probs = append(probs, Problem{Pointer: ptr + "/" + escapeToken(m), Message: "required member is missing"})
			}
		case *kind.DependentRequired:
			for _, m := range k.Missing {
				probs = append(probs, Problem{Pointer: ptr + "/" + escapeToken(m), Message: fmt.Sprintf("required when %q is present", k.Prop)})
			}
		case *kind.AdditionalProperties:
			for _, m := range k.Properties {
				probs = append(probs, Problem{Pointer: ptr + "/" + escapeToken(m), Message: "member is not allowed here"})
			}
		default:
			msg := e.Error()
			if out := e.BasicOutput(); out != nil && out.Error != nil {
				msg = out.Error.String()
			}
			probs = append(probs, Problem{Pointer: ptr, Message: msg})
		}
	}
	walk(ve, "")
	slices.SortStableFunc(probs, func(a, b Problem) int { return strings.Compare(a.Pointer, b.Pointer) })
	probs = slices.Compact(probs)
	return &ValidationError{Schema: schema, Problems: probs}
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

// escapeToken escapes one JSON pointer reference token (RFC 6901 §3).
func escapeToken(t string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(t)
}

// crossCheck states the rules between envelope and data. It runs only on an
// event the schema accepted, so every member it reads is present and typed.
func crossCheck(ev map[string]any) []Problem {
	data := ev["data"].(map[string]any)
	var probs []Problem
	differ := func(ptr string, got any, dataPtr string, want any) {
		probs = append(probs, Problem{Pointer: ptr, Message: fmt.Sprintf("%v differs from %s %v", got, dataPtr, want)})
	}
	// The extension is a zero-padded decimal string and data.sequence a JSON
	// number; compare them as numbers.
	extSeq, errExt := strconv.ParseUint(ev["sequence"].(string), 10, 64)
	dataSeq, errData := strconv.ParseUint(fmt.Sprint(data["sequence"]), 10, 64)
	switch {
	case errExt != nil:
		probs = append(probs, Problem{Pointer: "/sequence", Message: "does not fit in 64 bits"})
	case errData != nil:
		probs = append(probs, Problem{Pointer: "/data/sequence", Message: "does not fit in 64 bits"})
	case extSeq != dataSeq:
		differ("/sequence", ev["sequence"], "/data/sequence", data["sequence"])
	}
	for _, p := range [][2]string{{"jobstate", "state"}, {"jobvendor", "vendor"}, {"jobinstance", "instance"}} {
		if ev[p[0]] != data[p[1]] {
			differ("/"+p[0], ev[p[0]], "/data/"+p[1], data[p[1]])
		}
	}
	// Both are RFC 3339 (the schema checked); the same instant may be written
	// with different offsets or precision.
	t1, err1 := time.Parse(time.RFC3339Nano, ev["time"].(string))
	t2, err2 := time.Parse(time.RFC3339Nano, data["detectedAt"].(string))
	if err1 == nil && err2 == nil && !t1.Equal(t2) {
		differ("/time", ev["time"], "/data/detectedAt", data["detectedAt"])
	}
	subject := data["job"].(string)
	if task, ok := data["task"].(string); ok {
		subject += "/" + task
	}
	if ev["subject"] != subject {
		probs = append(probs, Problem{Pointer: "/subject", Message: fmt.Sprintf("%q is not the job named in data (%q)", ev["subject"], subject)})
	}
	return probs
}

// TypeSchemaID is the $id of the schema of one event type (types/<type>.json).
func TypeSchemaID(eventType string) string {
	return "urn:jobbridge:schema:type:" + eventType + ":v1"
}

package bridge

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Contract constants (event contract v1). A change that breaks consumers gets
// a new DataSchemaURI and a new schema file.
const (
	SpecVersion         = "1.0"
	TypePrefix          = "io.jobbridge."
	DataSchemaURI       = "urn:jobbridge:schema:job-event:v1"
	StructuredMediaType = "application/cloudevents+json"
	DataMediaType       = "application/json"

	// Extension attribute names (CloudEvents: ^[a-z0-9]{1,20}$).
	ExtSequence     = "sequence"
	ExtVendor       = "jobvendor"
	ExtInstance     = "jobinstance"
	ExtState        = "jobstate"
	ExtPartitionKey = "partitionkey"

	// NATS headers the bridge sets besides the CloudEvents ones. They let a
	// restarted bridge rebuild its tracker from the stream without parsing
	// the body.
	HeaderSequence    = "Jobbridge-Sequence"
	HeaderFingerprint = "Jobbridge-Fingerprint"
	HeaderKind        = "Jobbridge-Kind"
	HeaderState       = "Jobbridge-State"
	HeaderNative      = "Jobbridge-Native" // percent-encoded
)

// WireMode selects how an event is laid out in a NATS message.
type WireMode string

// Wire modes. Structured is the only mode the CloudEvents 1.0.2 NATS binding
// defines; binary follows the binding's unreleased draft (ce- headers,
// percent-encoded values).
const (
	WireStructured WireMode = "structured"
	WireBinary     WireMode = "binary"
)

// EventType returns the CloudEvents type for an event kind and target state.
func EventType(kind EventKind, task bool, state State) string {
	entity := "job."
	if task {
		entity = "task."
	}
	if kind == KindTransition || kind == "" {
		return TypePrefix + entity + string(state)
	}
	return TypePrefix + entity + string(kind)
}

// EventTypes lists every type the bridge can emit, for the schema and its test.
func EventTypes() []string {
	var out []string
	for _, ent := range []bool{false, true} {
		for _, s := range States {
			out = append(out, EventType(KindTransition, ent, s))
		}
		for _, k := range []EventKind{KindProgress, KindVanished, KindStalled, KindDeadlineMissed} {
			out = append(out, EventType(k, ent, ""))
		}
	}
	return out
}

// NativeStatus is the vendor's own view, verbatim.
type NativeStatus struct {
	Status         string `json:"status"`
	PreviousStatus string `json:"previousStatus,omitempty"`
	SubState       string `json:"subState,omitempty"`
}

// EventData is the data member of every event (schema: schemas/job-event-data-v1.json).
type EventData struct {
	Vendor        string                `json:"vendor"`
	Instance      string                `json:"instance"`
	Job           string                `json:"job"`
	Task          string                `json:"task,omitempty"`
	Kind          EventKind             `json:"kind"`
	State         State                 `json:"state"`
	PreviousState State                 `json:"previousState,omitempty"`
	Terminal      bool                  `json:"terminal"`
	Native        NativeStatus          `json:"native"`
	Outcome       map[string]string     `json:"outcome,omitempty"`
	RunID         string                `json:"runId,omitempty"`
	Progress      *Progress             `json:"progress,omitempty"`
	Times         map[string]VendorTime `json:"times,omitempty"`
	DetectedAt    time.Time             `json:"detectedAt"`
	DetectedBy    Detection             `json:"detectedBy"`
	Sequence      uint64                `json:"sequence"`
	Labels        map[string]string     `json:"labels,omitempty"`
	// StalledSince is set on stalled events: the last change seen.
	StalledSince *time.Time `json:"stalledSince,omitempty"`
	// Deadline is set on deadline_missed events.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Raw is the vendor payload when it is JSON and fits the cap; RawText
	// holds it otherwise (truncated to the cap, RawTruncated set).
	Raw          json.RawMessage `json:"raw,omitempty"`
	RawText      string          `json:"rawText,omitempty"`
	RawTruncated bool            `json:"rawTruncated,omitempty"`
	RawBytes     int             `json:"rawBytes,omitempty"`
}

// Change is a detected change of one job, before it is encoded.
type Change struct {
	Kind EventKind
	Obs  Observation
	// Key is Obs.Job.Key(), when already known.
	Key string
	// Previous is what the tracker knew before; zero on the first observation.
	PreviousState  State
	PreviousNative string
	PreviousFP     uint64
	Fingerprint    uint64
	ProgressFP     uint64
	Seq            uint64
	Labels         map[string]string
	StalledSince   time.Time
	Deadline       time.Time
}

// Event is an encoded CloudEvent ready for JetStream, with what the tracker
// needs to commit it once acknowledged.
type Event struct {
	// Key is Job.Key(); see key().
	Key         string
	ID          string
	Type        string
	Subject     string
	Job         JobRef
	Kind        EventKind
	State       State
	Native      string
	Seq         uint64
	Fingerprint uint64
	ProgressFP  uint64
	Terminal    bool
	ObservedAt  time.Time
	Msg         *nats.Msg

	// wire holds what Msg points to and its header values: one allocation
	// per event instead of three.
	wire struct {
		msg  nats.Msg
		vals [6]string
	}

	// Publisher bookkeeping: send attempts and the checkpoint floor (see
	// Publisher.Checkpoint), set when first sent.
	attempts int
	floor    uint64
}

func (e *Event) key() string {
	if e.Key == "" {
		e.Key = e.Job.Key()
	}
	return e.Key
}

// Fingerprint hashes what makes two observations the same state: canonical
// state, native status and sub-state, run id and outcome fields.
func Fingerprint(o *Observation) uint64 {
	h := fnv.New64a()
	write := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	write(string(o.State))
	write(o.Native)
	write(o.SubState)
	write(o.RunID)
	if len(o.Outcome) > 0 {
		keys := make([]string, 0, len(o.Outcome))
		for k := range o.Outcome {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			write(k)
			write(o.Outcome[k])
		}
	}
	return h.Sum64()
}

// ProgressFingerprint hashes the progress part of an observation (0 when none).
func ProgressFingerprint(p *Progress) uint64 {
	if p == nil {
		return 0
	}
	h := fnv.New64a()
	if p.Percent != nil {
		fmt.Fprintf(h, "p%.3f", *p.Percent)
	}
	if p.StepsDone != nil {
		fmt.Fprintf(h, "d%d", *p.StepsDone)
	}
	if p.StepsTotal != nil {
		fmt.Fprintf(h, "t%d", *p.StepsTotal)
	}
	fmt.Fprintf(h, "m%q", p.Message)
	s := h.Sum64()
	if s == 0 {
		s = 1
	}
	return s
}

var extensionName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// EncoderOptions configure event encoding.
type EncoderOptions struct {
	Subjects Subjects
	Mode     WireMode
	// RawCap caps the raw vendor payload carried in data, in bytes; a
	// negative cap leaves the payload out.
	RawCap int
}

// Encoder turns Changes into Events. It is safe for concurrent use.
type Encoder struct {
	opts EncoderOptions
	// types holds every event type string, built once: concatenating it per
	// event was an allocation on the publish path.
	types map[typeKey]string
	// sources caches Source per vendor instance (a handful per bridge).
	sourcesMu sync.RWMutex
	sources   map[[2]string]string
	// scratch holds buffers an event is written into before it is copied
	// out at its exact size: a buffer sized by estimate had to be zeroed
	// and was mostly slack (about a fifth of Encode's time).
	scratch sync.Pool
}

// maxScratch bounds the buffers kept for reuse; a rare huge raw payload
// does not pin its buffer.
const maxScratch = 64 << 10

type typeKey struct {
	kind  EventKind
	task  bool
	state State
}

func (e *Encoder) eventType(kind EventKind, task bool, state State) string {
	k := typeKey{kind, task, state}
	if kind == KindTransition || kind == "" {
		k.kind = KindTransition
	} else {
		k.state = ""
	}
	if t, ok := e.types[k]; ok {
		return t
	}
	return EventType(kind, task, state)
}

func (e *Encoder) source(vendor, instance string) string {
	k := [2]string{vendor, instance}
	e.sourcesMu.RLock()
	src, ok := e.sources[k]
	e.sourcesMu.RUnlock()
	if ok {
		return src
	}
	src = Source(vendor, instance)
	e.sourcesMu.Lock()
	if len(e.sources) < 4096 { // instances are few; a bound keeps a bug from growing it
		e.sources[k] = src
	}
	e.sourcesMu.Unlock()
	return src
}

// NewEncoder checks the options and returns an Encoder.
func NewEncoder(opts EncoderOptions) (*Encoder, error) {
	if err := ValidatePrefix(opts.Subjects.Prefix); err != nil {
		return nil, err
	}
	switch opts.Mode {
	case "":
		opts.Mode = WireStructured
	case WireStructured, WireBinary:
	default:
		return nil, fmt.Errorf("wire mode %q: use %q or %q", opts.Mode, WireStructured, WireBinary)
	}
	for _, n := range []string{ExtSequence, ExtVendor, ExtInstance, ExtState, ExtPartitionKey} {
		if !extensionName.MatchString(n) {
			return nil, fmt.Errorf("extension name %q breaks the CloudEvents naming rule", n)
		}
	}
	enc := &Encoder{opts: opts, types: make(map[typeKey]string), sources: make(map[[2]string]string)}
	for _, task := range []bool{false, true} {
		for _, st := range States {
			enc.types[typeKey{KindTransition, task, st}] = EventType(KindTransition, task, st)
		}
		for _, k := range []EventKind{KindProgress, KindVanished, KindStalled, KindDeadlineMissed} {
			enc.types[typeKey{k, task, ""}] = EventType(k, task, "")
		}
	}
	return enc, nil
}

// Source is the CloudEvents source of events about one vendor instance.
func Source(vendor, instance string) string {
	return "/jobbridge/" + url.PathEscape(vendor) + "/" + url.PathEscape(instance)
}

// EventID derives the event id from the transition itself: the same change
// of the same job at the same position in its history always gets the same
// id, so a bridge that re-detects it after a crash publishes a copy that
// JetStream's duplicate window drops.
func EventID(source string, job JobRef, kind EventKind, seq, prevFP, fp, progFP uint64) string {
	return eventID(source, job.Key(), kind, seq, prevFP, fp, progFP)
}

func eventID(source, jobKey string, kind EventKind, seq, prevFP, fp, progFP uint64) string {
	// The input is assembled in a stack buffer and hashed in one call: the
	// hash.Hash interface and Sum(nil) allocated on every event.
	var stack [512]byte
	in := stack[:0]
	in = append(in, source...)
	in = append(in, 0)
	in = append(in, jobKey...)
	in = append(in, 0)
	in = append(in, kind...)
	in = append(in, 0)
	for _, v := range [4]uint64{seq, prevFP, fp, progFP} {
		in = binary.BigEndian.AppendUint64(in, v)
	}
	sum := sha256.Sum256(in)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// FormatSequence writes a sequence so that string order is numeric order.
func FormatSequence(seq uint64) string {
	return string(appendSequence(make([]byte, 0, 20), seq))
}

// appendSequence appends seq zero-padded to 20 digits (every uint64 fits).
func appendSequence(b []byte, seq uint64) []byte {
	var digits [20]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + seq%10)
		seq /= 10
	}
	return append(b, digits[:]...)
}

// Encode builds, validates and encodes the CloudEvent for c.
func (e *Encoder) Encode(c *Change) (*Event, error) {
	job := c.Obs.Job
	state := c.Obs.State
	if c.Kind == "" {
		c.Kind = KindTransition
	}
	if err := job.Validate(); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	switch {
	case !state.Valid():
		return nil, fmt.Errorf("encode event for %s: state %q is not canonical", job, state)
	case c.Obs.ObservedAt.IsZero():
		return nil, fmt.Errorf("encode event for %s: no observation time", job)
	case c.Seq == 0:
		return nil, fmt.Errorf("encode event for %s: sequence numbers start at 1", job)
	}
	key := c.Key
	if key == "" {
		key = job.Key()
	}
	source := e.source(job.Vendor, job.Instance)
	typ := e.eventType(c.Kind, job.Task != "", state)
	id := eventID(source, key, c.Kind, c.Seq, c.PreviousFP, c.Fingerprint, c.ProgressFP)

	data := EventData{
		Vendor:        job.Vendor,
		Instance:      job.Instance,
		Job:           job.ID,
		Task:          job.Task,
		Kind:          c.Kind,
		State:         state,
		PreviousState: c.PreviousState,
		Terminal:      state.Terminal(),
		Native:        NativeStatus{Status: c.Obs.Native, PreviousStatus: c.PreviousNative, SubState: c.Obs.SubState},
		Outcome:       c.Obs.Outcome,
		RunID:         c.Obs.RunID,
		Progress:      c.Obs.Progress,
		Times:         c.Obs.Times,
		DetectedAt:    c.Obs.ObservedAt.UTC(),
		DetectedBy:    c.Obs.Via,
		Sequence:      c.Seq,
		Labels:        c.Labels,
	}
	if data.DetectedBy == "" {
		data.DetectedBy = DetectedByPoll
	}
	if !c.StalledSince.IsZero() {
		t := c.StalledSince.UTC()
		data.StalledSince = &t
	}
	if !c.Deadline.IsZero() {
		t := c.Deadline.UTC()
		data.Deadline = &t
	}
	e.attachRaw(&data, c.Obs.Raw, c.Obs.RawJSON)

	env := envelope{
		id: id, source: source, typ: typ, subject: subjectAttr(job), time: data.DetectedAt,
		sequence: c.Seq, vendor: job.Vendor, instance: job.Instance,
		state: string(state), partitionKey: key,
	}

	subject := e.opts.Subjects.For(job, EventToken(c.Kind, state))
	ev := &Event{
		Key: key, ID: id, Type: typ, Subject: subject, Job: job, Kind: c.Kind, State: state,
		Native: c.Obs.Native, Seq: c.Seq, Fingerprint: c.Fingerprint, ProgressFP: c.ProgressFP,
		Terminal: state.Terminal(), ObservedAt: c.Obs.ObservedAt,
	}
	msg := &ev.wire.msg
	msg.Subject, msg.Header = subject, make(nats.Header, 8)
	ev.Msg = msg
	// The header values share one backing array and the two numbers one
	// string: a slice and a string per header showed in the allocation profile.
	vals := ev.wire.vals[:]
	var numBuf [48]byte
	nums := strconv.AppendUint(numBuf[:0], c.Seq, 10)
	seqLen := len(nums)
	nums = strconv.AppendUint(nums, c.Fingerprint, 16)
	nums = append(nums, '/')
	nums = strconv.AppendUint(nums, c.ProgressFP, 16)
	numStr := string(nums)
	vals[0], vals[1], vals[2], vals[3] = numStr[:seqLen], numStr[seqLen:], string(c.Kind), string(state)
	msg.Header[HeaderSequence] = vals[0:1:1]
	msg.Header[HeaderFingerprint] = vals[1:2:2]
	msg.Header[HeaderKind] = vals[2:3:3]
	msg.Header[HeaderState] = vals[3:4:4]
	if c.Obs.Native != "" {
		vals[4] = percentEncode(c.Obs.Native)
		msg.Header[HeaderNative] = vals[4:5:5]
	}
	bp, _ := e.scratch.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := (*bp)[:0]
	if e.opts.Mode == WireBinary {
		b = appendData(b, &data)
		env.setBinaryHeaders(msg.Header)
	} else {
		b = env.appendStructuredPrefix(b)
		b = appendData(b, &data)
		b = append(b, '}')
		vals[5] = StructuredMediaType
		msg.Header["Content-Type"] = vals[5:6:6]
	}
	// A copy at the exact size: append into nil does not zero what it
	// copies over, unlike make.
	msg.Data = append([]byte(nil), b...)
	if cap(b) <= maxScratch {
		*bp = b[:0]
		e.scratch.Put(bp)
	}
	return ev, nil
}

// subjectAttr is the CloudEvents subject: the vendor job id (and task).
func subjectAttr(job JobRef) string {
	if job.Task != "" {
		return job.ID + "/" + job.Task
	}
	return job.ID
}

// attachRaw carries raw as JSON when it is valid JSON and UTF-8 within the
// cap, else as capped text. rawIsJSON skips re-checking the syntax of a
// payload that encoding/json already parsed whole (it accepts invalid UTF-8,
// so that is still checked).
func (e *Encoder) attachRaw(d *EventData, raw []byte, rawIsJSON bool) {
	if len(raw) == 0 || e.opts.RawCap <= 0 {
		return
	}
	d.RawBytes = len(raw)
	// Invalid UTF-8 passes json.Valid but would make the body invalid.
	if len(raw) <= e.opts.RawCap && utf8.Valid(raw) && (rawIsJSON || json.Valid(raw)) {
		d.Raw = json.RawMessage(raw)
		return
	}
	cut := len(raw)
	if cut > e.opts.RawCap {
		cut = e.opts.RawCap
		// Back off to a rune start (at most 3 bytes) so the cut does not
		// split a character; bad bytes elsewhere become U+FFFD below.
		for i := 0; i < 3 && cut > 0 && !utf8.RuneStart(raw[cut]); i++ {
			cut--
		}
		d.RawTruncated = true
	}
	d.RawText = strings.ToValidUTF8(string(raw[:cut]), "\uFFFD")
}

// envelope holds the context attributes of one event. The hot path writes
// the structured JSON by hand: going through sdk-go's event type and
// encoding/json cost 40% of the publish path's CPU (encoding/json compacts
// whatever a MarshalJSON method returns, the whole event again). The output
// is the same document; TestEnvelopeMatchesSDK decodes it with sdk-go and
// checks it validates and round-trips.
type envelope struct {
	id, source, typ, subject string
	time                     time.Time
	sequence                 uint64
	vendor, instance, state  string
	partitionKey             string
}

// appendStructuredPrefix writes the event up to and including `"data":`;
// the caller appends the data and the closing brace.
func (e *envelope) appendStructuredPrefix(b []byte) []byte {
	b = append(b, `{"specversion":"`+SpecVersion+`","id":`...)
	b = appendJSONString(b, e.id)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.typ)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, e.subject)
	b = append(b, `,"time":"`...)
	b = e.time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":"`+DataMediaType+`","dataschema":"`+DataSchemaURI+`","`+ExtSequence+`":"`...)
	b = appendSequence(b, e.sequence)
	b = append(b, `","`+ExtVendor+`":`...)
	b = appendJSONString(b, e.vendor)
	b = append(b, `,"`+ExtInstance+`":`...)
	b = appendJSONString(b, e.instance)
	b = append(b, `,"`+ExtState+`":"`...)
	b = append(b, e.state...)
	b = append(b, `","`+ExtPartitionKey+`":`...)
	b = appendJSONString(b, e.partitionKey)
	return append(b, `,"data":`...)
}

// setBinaryHeaders writes every attribute as a ce- header, values
// percent-encoded as the NATS binding draft (§3.1.3.2) requires.
func (e *envelope) setBinaryHeaders(h nats.Header) {
	h["ce-specversion"] = []string{SpecVersion}
	h["ce-id"] = []string{percentEncode(e.id)}
	h["ce-source"] = []string{percentEncode(e.source)}
	h["ce-type"] = []string{percentEncode(e.typ)}
	h["ce-subject"] = []string{percentEncode(e.subject)}
	h["ce-time"] = []string{e.time.UTC().Format(time.RFC3339Nano)}
	h["ce-dataschema"] = []string{percentEncode(DataSchemaURI)}
	h["ce-datacontenttype"] = []string{percentEncode(DataMediaType)}
	h["ce-"+ExtSequence] = []string{FormatSequence(e.sequence)}
	h["ce-"+ExtVendor] = []string{percentEncode(e.vendor)}
	h["ce-"+ExtInstance] = []string{percentEncode(e.instance)}
	h["ce-"+ExtState] = []string{percentEncode(e.state)}
	h["ce-"+ExtPartitionKey] = []string{percentEncode(e.partitionKey)}
}

const lowerHex = "0123456789abcdef"

// jsonSafeASCII marks the ASCII bytes appendJSONString copies as they are: one
// table lookup per byte instead of six comparisons on the publish path.
var jsonSafeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString writes s as a JSON string; it escapes what encoding/json
// escapes (including <, >, & and U+2028/2029) so both encoders agree.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafeASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', lowerHex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// percentEncode escapes space, '"', '%' and every byte outside U+0021-U+007E.
func percentEncode(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	b := make([]byte, 0, len(s)*3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&0x0f])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// PercentDecode reverses percentEncode for consumers of binary mode.
func PercentDecode(s string) (string, error) {
	v, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("ce- header value %q: %w", s, err)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("ce- header value %q does not decode to UTF-8", s)
	}
	return v, nil
}

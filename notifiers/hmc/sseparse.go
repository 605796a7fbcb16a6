package hmc

import (
	"bytes"
)

// sseEvent is one server-sent event's fields.
type sseEvent struct {
	ID, Event string
	HasID     bool
	Data      []byte
	// Comment is true for a block of comment lines only (a keep-alive).
	Comment bool
}

// parseSSEEvent reads the lines of one event block (as r3labs'
// EventStreamReader splits the stream) by the WHATWG rules: "field: value"
// with one optional space, data lines joined with "\n", lines starting with
// ":" are comments, unknown fields ignored, an id holding NUL ignored.
// r3labs' own field parser is not used: it is tied to its Client.
func parseSSEEvent(raw []byte) sseEvent {
	var ev sseEvent
	var data [][]byte
	hasData, hasField := false, false
	for len(raw) > 0 {
		var line []byte
		i := bytes.IndexAny(raw, "\r\n")
		if i < 0 {
			line, raw = raw, nil
		} else {
			line = raw[:i]
			if raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
			raw = raw[i+1:]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == ':' {
			continue
		}
		hasField = true
		name, value := line, []byte(nil)
		if c := bytes.IndexByte(line, ':'); c >= 0 {
			name, value = line[:c], line[c+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "data":
			hasData = true
			data = append(data, value)
		case "event":
			ev.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID, ev.HasID = string(value), true
			}
		}
	}
	if hasData {
		ev.Data = append([]byte{}, bytes.Join(data, []byte("\n"))...)
	}
	ev.Comment = !hasField
	return ev
}

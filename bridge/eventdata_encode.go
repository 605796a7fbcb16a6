package bridge

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// appendData writes d exactly as encoding/json would (same member order,
// same omissions, map keys sorted, same string escaping), without
// reflection: it is on the publish hot path. TestAppendDataMatchesMarshal
// holds it to json.Marshal.
func appendData(b []byte, d *EventData) []byte {
	b = append(b, `{"vendor":`...)
	b = appendJSONString(b, d.Vendor)
	b = append(b, `,"instance":`...)
	b = appendJSONString(b, d.Instance)
	b = append(b, `,"job":`...)
	b = appendJSONString(b, d.Job)
	if d.Task != "" {
		b = append(b, `,"task":`...)
		b = appendJSONString(b, d.Task)
	}
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(d.Kind))
	b = append(b, `,"state":`...)
	b = appendJSONString(b, string(d.State))
	if d.PreviousState != "" {
		b = append(b, `,"previousState":`...)
		b = appendJSONString(b, string(d.PreviousState))
	}
	b = append(b, `,"terminal":`...)
	b = strconv.AppendBool(b, d.Terminal)
	b = append(b, `,"native":{"status":`...)
	b = appendJSONString(b, d.Native.Status)
	if d.Native.PreviousStatus != "" {
		b = append(b, `,"previousStatus":`...)
		b = appendJSONString(b, d.Native.PreviousStatus)
	}
	if d.Native.SubState != "" {
		b = append(b, `,"subState":`...)
		b = appendJSONString(b, d.Native.SubState)
	}
	b = append(b, '}')
	if len(d.Outcome) > 0 {
		b = append(b, `,"outcome":`...)
		b = appendStringMap(b, d.Outcome)
	}
	if d.RunID != "" {
		b = append(b, `,"runId":`...)
		b = appendJSONString(b, d.RunID)
	}
	if d.Progress != nil {
		b = append(b, `,"progress":`...)
		b = appendProgress(b, d.Progress)
	}
	if len(d.Times) > 0 {
		b = append(b, `,"times":{`...)
		for i, k := range sortedKeys(d.Times) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			vt := d.Times[k]
			b = append(b, `:{"vendor":`...)
			b = appendJSONString(b, vt.Raw)
			if !vt.Normalized.IsZero() {
				b = append(b, `,"normalized":`...)
				b = appendTime(b, vt.Normalized)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `,"detectedAt":`...)
	b = appendTime(b, d.DetectedAt)
	b = append(b, `,"detectedBy":`...)
	b = appendJSONString(b, string(d.DetectedBy))
	b = append(b, `,"sequence":`...)
	b = strconv.AppendUint(b, d.Sequence, 10)
	if len(d.Labels) > 0 {
		b = append(b, `,"labels":`...)
		b = appendStringMap(b, d.Labels)
	}
	if d.StalledSince != nil {
		b = append(b, `,"stalledSince":`...)
		b = appendTime(b, *d.StalledSince)
	}
	if d.Deadline != nil {
		b = append(b, `,"deadline":`...)
		b = appendTime(b, *d.Deadline)
	}
	if len(d.Raw) > 0 {
		b = append(b, `,"raw":`...)
		b = append(b, d.Raw...)
	}
	if d.RawText != "" {
		b = append(b, `,"rawText":`...)
		b = appendJSONString(b, d.RawText)
	}
	if d.RawTruncated {
		b = append(b, `,"rawTruncated":true`...)
	}
	if d.RawBytes != 0 {
		b = append(b, `,"rawBytes":`...)
		b = strconv.AppendInt(b, int64(d.RawBytes), 10)
	}
	return append(b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendProgress is rare (ArcGIS, Huawei) and holds floats, whose exact
// encoding/json formatting is not worth copying.
func appendProgress(b []byte, p *Progress) []byte {
	v, err := json.Marshal(p)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, v...)
}

package simkit

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// EncodeJSON encodes v as the vendors' Java servers do: <, > and & as
// they are, not \u003c..., and a final newline.
func EncodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteJSON answers code with v encoded by EncodeJSON, as contentType:
// vendors spell it differently (application/json;charset=UTF-8, ...), and
// a faithful simulator copies theirs.
func WriteJSON(w http.ResponseWriter, code int, contentType string, v any) {
	b, err := EncodeJSON(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	WriteBody(w, code, contentType, string(b))
}

// WriteBody answers code with body as contentType: a canned page or a
// truncated payload of a fault, say.
func WriteBody(w http.ResponseWriter, code int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// ReadBody reads a request body of at most limit bytes; a longer one is an
// error (and closes the connection, as http.MaxBytesReader does).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return b.Bytes(), err
}

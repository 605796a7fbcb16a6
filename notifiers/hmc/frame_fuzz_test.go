package hmc

import (
	"bytes"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"
)

// FuzzSTOMPFrame: raw bytes from the broker, read as the notifier reads
// them (go-stomp's frame reader, then the completion headers): any frame
// is a completion naming a valid job, not one, or ErrMalformed; nothing
// panics or hangs.
func FuzzSTOMPFrame(f *testing.F) {
	f.Add([]byte("MESSAGE\nnotification-type:job-completion\njob-uri:/api/jobs/x\nglobal-sequence-nr:6399\nsession-sequence-nr:1\n\n\x00"))
	f.Add([]byte("MESSAGE\nnotification-type:job-completion\njob-uri:/api/jobs/a%2Eb%2A\ncontent-length:3\n\nabc\x00\n"))
	f.Add([]byte("\n\n\nMESSAGE\njob-uri:\n\n\x00"))
	f.Add([]byte("ERROR\nmessage:bad\n\nboom\x00"))
	f.Add([]byte("MESSAGE\ncontent-length:99999999999\n\n\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := frame.NewReader(bytes.NewReader(raw))
		for i := 0; i < 8; i++ {
			fr, err := r.Read()
			if err != nil {
				return
			}
			if fr == nil || fr.Command != frame.MESSAGE {
				continue
			}
			c, ok, err := parseCompletion(fr.Header.Contains)
			checkParsed(t, c, ok, err)
		}
	})
}

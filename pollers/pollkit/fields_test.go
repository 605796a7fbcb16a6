package pollkit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge"
)

type testFields struct {
	Status Value `json:"status"`
	Start  Value `json:"startTime"`
	Nested struct {
		Steps Value `json:"steps"`
	} `json:"nested"`
	List []json.RawMessage `json:"list"`
}

func TestDecodeFieldsReadsLikeObject(t *testing.T) {
	var f testFields
	mismatch, err := DecodeFields([]byte(` {"STATUS":"RUNNING","starttime":null,"nested":{"Steps":[1, 2]},"list":[{"a":1}, 2],"other":{"x":[]}} `), &f)
	if err != nil || mismatch {
		t.Fatalf("mismatch %v err %v", mismatch, err)
	}
	if s, ok, err := f.Status.String("status"); s != "RUNNING" || !ok || err != nil {
		t.Errorf("status %q %v %v", s, ok, err)
	}
	if !f.Start.Found() || !f.Start.IsNull() || f.Start.Set() {
		t.Errorf("a null is found, null and not set: %+v", f.Start)
	}
	if s, ok := f.Nested.Steps.Text(); s != "[1,2]" || !ok {
		t.Errorf("nested text %q %v: want compact JSON", s, ok)
	}
	if len(f.List) != 2 || string(f.List[0]) != `{"a":1}` {
		t.Errorf("list %q", f.List)
	}
}

func TestDecodeFieldsMismatchIsNotFatal(t *testing.T) {
	var f testFields
	mismatch, err := DecodeFields([]byte(`{"nested":[1],"list":{},"status":"ok"}`), &f)
	if err != nil || !mismatch {
		t.Fatalf("mismatch %v err %v: want a mismatch and no error", mismatch, err)
	}
	if s, _, _ := f.Status.String("status"); s != "ok" || f.Nested.Steps.Found() || f.List != nil {
		t.Errorf("fields after a mismatch: %+v", f)
	}
}

func TestDecodeFieldsErrors(t *testing.T) {
	for _, body := range []string{``, `  `, `<html>502</html>`, `null`, `[]`, `"x"`, `7`, `{"status":`, `{"status":"a"} x`} {
		var f testFields
		_, err := DecodeFields([]byte(body), &f)
		if !errors.Is(err, bridge.ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", body, err)
		}
	}
}

func TestValueAbsentAndStrings(t *testing.T) {
	var v Value
	if v.Found() || v.Set() || v.IsString() || v.Raw() != nil {
		t.Errorf("zero Value %+v is not absent", v)
	}
	if s, ok, err := v.String("k"); s != "" || ok || err != nil {
		t.Errorf("absent String: %q %v %v", s, ok, err)
	}
	if _, _, err := NewValue([]byte(`7`)).String("k"); !errors.Is(err, bridge.ErrMalformed) || !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("non-string: %v", err)
	}
	for raw, want := range map[string]string{`"a\"b"`: `a"b`, `"\u00e9t\u00e9"`: "été", "\"\xff\"": "\ufffd", `"plain"`: "plain", `""`: ""} {
		if s, ok := NewValue([]byte(raw)).Text(); s != want || !ok {
			t.Errorf("Text(%s) = %q %v, want %q", raw, s, ok, want)
		}
	}
}

// FuzzValueAccessors holds Value's accessors to Object's on the same JSON
// value: the poll-path parsers replaced the one with the other.
func FuzzValueAccessors(f *testing.F) {
	for _, s := range []string{`"x"`, `" a b "`, `"a\nb"`, "\"\xfe\"", `""`, `null`, `true`, `false`, `0`, `-1.5e3`, `{"a" : [1, 2]}`, `[ ]`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var o Object
		if json.Unmarshal(append(append([]byte(`{"k":`), raw...), '}'), &o) != nil {
			return
		}
		var holder struct {
			K Value `json:"k"`
		}
		if err := json.Unmarshal(append(append([]byte(`{"k":`), raw...), '}'), &holder); err != nil {
			t.Fatalf("Value refused %q: %v", raw, err)
		}
		v := holder.K
		s1, ok1, err1 := o.String("k")
		s2, ok2, err2 := v.String("k")
		if s1 != s2 || ok1 != ok2 || (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("String(%q): Object %q %v %v, Value %q %v %v", raw, s1, ok1, err1, s2, ok2, err2)
		}
		t1, ok1 := o.Text("k")
		t2, ok2 := v.Text()
		if t1 != t2 || ok1 != ok2 {
			t.Fatalf("Text(%q): Object %q %v, Value %q %v", raw, t1, ok1, t2, ok2)
		}
		if r, _ := o.Get("k"); string(r) != v.JSON() {
			t.Fatalf("JSON(%q): Object %q, Value %q", raw, r, v.JSON())
		}
	})
}

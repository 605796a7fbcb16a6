package pollkit

import (
	"strings"
	"testing"

	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/rs/zerolog"
)

func TestDecodeOptionsIsStrict(t *testing.T) {
	type opts struct {
		Flavor   string `yaml:"flavor"`
		TokenURL string `yaml:"tokenURL"`
	}
	inst := config.Instance{Name: "gis", Vendor: "arcgis", Options: map[string]any{"flavor": "mission", "tokenURL": "https://x/t"}}
	var o opts
	if err := DecodeOptions(inst, &o); err != nil || o.Flavor != "mission" || o.TokenURL != "https://x/t" {
		t.Fatalf("decode: %v %+v", err, o)
	}
	inst.Options["flavour"] = "x"
	err := DecodeOptions(inst, &o)
	if err == nil || !strings.Contains(err.Error(), "flavour") || !strings.Contains(err.Error(), "known options: flavor, tokenURL") || !strings.Contains(err.Error(), "gis") {
		t.Fatalf("want an error naming the key, instance and known options, got %v", err)
	}
}

func TestClientOptionsForCarriesSharedSettings(t *testing.T) {
	inst := config.Instance{Name: "p", Vendor: "tso", URL: "https://h/baocdp", Concurrency: 3, RateLimit: 2.5, MaxBodyBytes: 99,
		TLS: config.TLS{CAFile: "/ca.pem", InsecureSkipVerify: true}}
	o := ClientOptionsFor(inst, zerolog.Nop())
	if o.BaseURL != inst.URL || o.MaxConcurrent != 3 || o.RateLimit != 2.5 || o.MaxBodyBytes != 99 || o.CAFile != "/ca.pem" || !o.InsecureSkipVerify {
		t.Fatalf("got %+v", o)
	}
}

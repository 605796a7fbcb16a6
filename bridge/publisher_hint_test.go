package bridge

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestStoreFullIsToldApart: an operator whose NATS store is full must not be
// sent to check the network.
func TestStoreFullIsToldApart(t *testing.T) {
	for code, want := range map[jetstream.ErrorCode]bool{10023: true, 10047: true, 10077: true, 10059: false, 10071: false} {
		err := fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: "x"})
		if got := storeFull(err); got != want {
			t.Errorf("storeFull(code %d) = %v, want %v", code, got, want)
		}
	}
	if storeFull(errors.New("nats: timeout")) {
		t.Error("a timeout is not a full store")
	}
}

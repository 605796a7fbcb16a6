package helix

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// jwtExpiry reads the exp claim of a JWT (RFC 7519 §4.1.4: seconds since the
// epoch, possibly fractional) without verifying the signature: the bridge
// only uses it to plan a renewal, and a wrong value costs at most one 401 and
// a re-login. It reports false for anything that is not a three-part JWT
// with a numeric exp in years 1970 to 9999.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > 16<<10 {
		return time.Time{}, false
	}
	// RFC 7515 says unpadded base64url; some issuers pad anyway.
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || len(claims.Exp) == 0 {
		return time.Time{}, false
	}
	var exp float64
	dec := json.NewDecoder(bytes.NewReader(claims.Exp))
	if dec.Decode(&exp) != nil || math.IsNaN(exp) || exp <= 0 || exp > 253402300799 { // 9999-12-31T23:59:59Z
		return time.Time{}, false
	}
	sec, frac := math.Modf(exp)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

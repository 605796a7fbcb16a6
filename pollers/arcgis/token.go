package arcgis

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// parseToken reads a generateToken answer, {"token": "...", "expires":
// <epoch ms>, "ssl": true} (ssl only from a portal). date is the answer's
// Date header and now the poller's clock.
//
// expires is an instant on the server's clock. When the Date header says
// what that clock read, the token's expiry is taken as a lifetime from now on
// ours, so a skewed clock on either side neither renews the token on every
// poll nor lets it run out unnoticed. Without a Date header the instant is
// used as it is, unless it has already passed by our clock: then the expiry
// is left unknown (renewal happens on the first 498) and note says why.
func parseToken(body []byte, date string, now time.Time) (tok pollkit.Token, note string, err error) {
	o, err := pollkit.DecodeObject(body)
	if err != nil {
		return pollkit.Token{}, "", err
	}
	value, ok, err := o.String("token")
	if err != nil {
		return pollkit.Token{}, "", err
	}
	if !ok || strings.TrimSpace(value) == "" {
		// Do not quote the body: it might hold a token under another key.
		return pollkit.Token{}, "", fmt.Errorf("%w: the generateToken answer has no token; check that options.tokenURL is a generateToken endpoint", bridge.ErrMalformed)
	}
	tok = pollkit.Token{Value: bridge.NewSecret(value)}
	if raw, ok := o.Get("ssl"); ok {
		if ssl, ok := boolean(pollkit.NewValue(raw)); ok {
			tok.Extra = map[string]string{"ssl": strconv.FormatBool(ssl)}
		}
	}
	raw, ok := o.Get("expires")
	if !ok || isJSONNull(raw) {
		return tok, "the generateToken answer has no expires: the token is renewed only when ArcGIS refuses it", nil
	}
	ms, ok := integer(pollkit.NewValue(raw))
	if !ok || ms <= 0 {
		return pollkit.Token{}, "", fmt.Errorf("%w: the generateToken answer's expires %s is not epoch milliseconds", bridge.ErrMalformed, pollkit.Snippet(raw, 40))
	}
	expires := time.UnixMilli(ms)
	if serverNow, err := http.ParseTime(date); err == nil {
		life := expires.Sub(serverNow)
		if life <= 0 {
			return pollkit.Token{}, "", fmt.Errorf("%w: generateToken issued a token that expires at %s, not after the server's own time %s",
				bridge.ErrMalformed, expires.UTC().Format(time.RFC3339), serverNow.UTC().Format(time.RFC3339))
		}
		tok.Expiry = now.Add(life)
		return tok, "", nil
	}
	if !expires.After(now) {
		return tok, fmt.Sprintf("the token expires at %s, already past by this host's clock (%s) and the answer has no Date header to correct the skew: the token is renewed only when ArcGIS refuses it; synchronise the clocks",
			expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), nil
	}
	tok.Expiry = expires
	return tok, "", nil
}

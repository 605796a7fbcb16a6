// Package pollkit owns the plumbing that every vendor poller shares, so that a
// poller package holds only vendor knowledge (endpoints, payload shapes,
// mapping table):
//
//   - Client: an HTTP client for one vendor instance. TLS verified by default
//     (extra CA file, client certificate, an explicit and loudly logged
//     InsecureSkipVerify), a per-attempt timeout, a response body cap,
//     retries with jittered exponential backoff (package bridge/backoff) on
//     network errors, 5xx and 429 honouring Retry-After, a concurrency limit
//     and an optional request rate limit. A Classifier lets a vendor call a
//     200 response retryable (errors inside HTTP 200, gateway throttling
//     codes) without copying the retry loop.
//   - TokenSource: the one credential-renewal mechanism. The vendor supplies
//     how to log in, how the token travels on a request and what an auth
//     failure looks like; TokenSource renews before a known expiry, renews
//     once on an auth failure, makes concurrent renewals single-flight and
//     backs off after failed logins so a wrong password cannot lock the
//     account.
//   - StateTable: a native status → canonical state table, case-insensitive
//     and trimmed, unknown values mapping to bridge.StateUnknown.
//   - Small parsing helpers: DecodeJSON and Object (case-insensitive key
//     lookup that keeps unknown fields), EscapePathSegment.
//
// Errors wrap bridge.ErrMalformed and bridge.ErrAuth where they apply, and say
// what the user can change. Nothing here logs a secret: credentials are
// bridge.Secret values, requests are logged by method and path only (never
// the query string, where some vendors put tokens), and transport errors have
// their query strings stripped.
package pollkit

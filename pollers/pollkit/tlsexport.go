package pollkit

import "crypto/tls"

// TLSConfig builds the TLS client configuration that a Client with these
// options uses (CAFile added to the system pool, client certificate,
// InsecureSkipVerify), for a connection to the same vendor that the Client
// does not make itself: the HMC's STOMP broker or SSE stream, say.
func TLSConfig(opts ClientOptions) (*tls.Config, error) { return tlsConfig(opts) }

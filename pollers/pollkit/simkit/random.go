package simkit

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
)

// RandomHex returns n random bytes as 2n lower-case hex digits.
func RandomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

// RandomBase64 returns n random bytes in enc: the shape of a vendor's
// opaque token.
func RandomBase64(enc *base64.Encoding, n int) string { return enc.EncodeToString(randomBytes(n)) }

// RandomUUID returns 16 random bytes in the 8-4-4-4-12 hex form of a UUID
// (without version bits: vendors' ids only look like UUIDs).
func RandomUUID() string {
	h := RandomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return b
}

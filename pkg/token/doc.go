// Package token mints the short-lived internal JWTs that sessiongate hands to
// Envoy after resolving an opaque session ID, and publishes the matching
// public keys (JWKS and OpenID discovery) so downstream services can verify
// them without ever talking to Redis or holding a shared secret.
//
// Only asymmetric algorithms are supported (ES256, EdDSA, RS256): a
// downstream service must never be able to mint tokens, so HMAC is out.
//
// Key material lives in an immutable KeySet. Rotation is done by building a
// new KeySet (typically via LoadKeySet from files) and swapping it into the
// Signer atomically; in-flight Sign calls keep using the set they loaded.
// Verification-only keys let a retired signing key stay in the JWKS until
// every token it signed has expired.
package token

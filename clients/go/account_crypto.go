package opentoken

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// PasswordHashConfig is the server's "passwordHashConfig": how a password is hashed on the
// client before it is sent (registration) or used in a challenge hash (login).
type PasswordHashConfig struct {
	Type          string `json:"type"`          // "pbkdf2"
	Algorithm     string `json:"algorithm"`     // "sha512"
	DerivedLength int    `json:"derivedLength"` // bytes
	Encoding      string `json:"encoding"`      // "base64"
	Iterations    int    `json:"iterations"`
	Salt          string `json:"salt"` // used as its UTF-8 bytes
}

// ChallengeHashConfig is the login challenge's "challengeHashConfig".
type ChallengeHashConfig struct {
	Algorithm string `json:"algorithm"` // "sha512"
	Encoding  string `json:"encoding"`  // "hex"
	Salt      string `json:"salt"`
}

// PBKDF2SHA512 is PBKDF2 (RFC 8018 §5.2) with HMAC-SHA512 as the PRF.
func PBKDF2SHA512(password, salt []byte, iterations, keyLen int) []byte {
	prf := hmac.New(sha512.New, password)
	hLen := prf.Size()
	blocks := (keyLen + hLen - 1) / hLen
	out := make([]byte, 0, blocks*hLen)
	var counter [4]byte
	u := make([]byte, hLen)
	t := make([]byte, hLen)
	for block := 1; block <= blocks; block++ {
		binary.BigEndian.PutUint32(counter[:], uint32(block))
		prf.Reset()
		prf.Write(salt)
		prf.Write(counter[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for i := 1; i < iterations; i++ {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:keyLen]
}

// PasswordHash hashes password as cfg says (PBKDF2-SHA512, base64): the "passwordHash" of the
// registration and the input of the login challenge hash. Only what the server announces is
// accepted; anything else is an error rather than a silently different hash.
func PasswordHash(cfg PasswordHashConfig, password string) (string, error) {
	if cfg.Type != "pbkdf2" || cfg.Algorithm != "sha512" || cfg.Encoding != "base64" {
		return "", fmt.Errorf("opentoken: unsupported password hash %s/%s/%s",
			cfg.Type, cfg.Algorithm, cfg.Encoding)
	}
	if cfg.Iterations < 1 || cfg.Iterations > 10_000_000 || cfg.DerivedLength < 1 ||
		cfg.DerivedLength > 1024 {
		return "", fmt.Errorf("opentoken: password hash parameters out of range")
	}
	raw := PBKDF2SHA512([]byte(password), []byte(cfg.Salt), cfg.Iterations, cfg.DerivedLength)
	return base64.StdEncoding.EncodeToString(raw), nil
}

// ChallengeHash is hex(SHA-512(passwordHash || salt)), the login proof.
func ChallengeHash(passwordHash string, cfg ChallengeHashConfig) (string, error) {
	if cfg.Algorithm != "sha512" || cfg.Encoding != "hex" {
		return "", fmt.Errorf("opentoken: unsupported challenge hash %s/%s", cfg.Algorithm, cfg.Encoding)
	}
	sum := sha512.Sum512([]byte(passwordHash + cfg.Salt))
	return hex.EncodeToString(sum[:]), nil
}

// TOTP step and length used by opentokend (RFC 6238 with HMAC-SHA1).
const (
	TOTPPeriod = 30 * time.Second
	TOTPDigits = 6
)

// TOTP returns the 6-digit RFC 6238 code (HMAC-SHA1, 30 s steps) of key at time t.
func TOTP(key []byte, t time.Time) string {
	return TOTPWith(key, t, TOTPPeriod, TOTPDigits)
}

// TOTPWith is TOTP with another step or number of digits (1 to 9).
func TOTPWith(key []byte, t time.Time, period time.Duration, digits int) string {
	counter := uint64(t.Unix() / int64(period/time.Second))
	return hotp(key, counter, digits)
}

func hotp(key []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	o := sum[len(sum)-1] & 0x0f
	code := binary.BigEndian.Uint32(sum[o:o+4]) & 0x7fffffff
	mod := uint32(1)
	for i := 0; i < digits; i++ {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, code%mod)
}

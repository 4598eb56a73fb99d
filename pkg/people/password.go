package people

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password limits. The minimum follows NIST SP 800-63B for passwords a
// person chooses; the maximum bounds the hashing work a request can ask.
const (
	PasswordMinLength = 12
	PasswordMaxBytes  = 256
)

// Argon2id parameters (RFC 9106's second recommended option, memory
// lowered to OWASP's 19 MiB so that a sign-in costs tens of milliseconds on
// one core). Each hash records its own parameters, so raising these later
// leaves existing hashes verifiable.
var hashParams = argonParams{memory: 19 * 1024, time: 2, threads: 1, keyLen: 32, saltLen: 16}

type argonParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	keyLen  uint32
	saltLen int
}

// hashSlots bounds the argon2id computations running at once (each takes
// its memory, 19 MiB): a flood of sign-ins or password forms queues here
// instead of exhausting the process.
var hashSlots = make(chan struct{}, 4)

func argonKey(password string, salt []byte, p argonParams) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, p.keyLen)
}

// CheckPasswordPolicy says what is wrong with a new password, or nil.
func CheckPasswordPolicy(password string) error {
	switch {
	case !utf8.ValidString(password):
		return errors.New("password: not valid UTF-8")
	case utf8.RuneCountInString(password) < PasswordMinLength:
		return fmt.Errorf("password: at least %d characters", PasswordMinLength)
	case len(password) > PasswordMaxBytes:
		return fmt.Errorf("password: at most %d bytes", PasswordMaxBytes)
	}
	return nil
}

// HashPassword returns the argon2id hash of password as a PHC string:
// $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func HashPassword(password string) (string, error) {
	p := hashParams
	salt := make([]byte, p.saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	key := argonKey(password, salt, p)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrBadHash means a stored hash is not an argon2id PHC string this
// package can check.
var ErrBadHash = errors.New("password: unrecognised hash")

// CheckPassword reports whether password matches the PHC string hash, in
// time that does not depend on where they differ.
func CheckPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, ErrBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrBadHash
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil ||
		p.memory == 0 || p.memory > 1<<20 || p.time == 0 || p.time > 16 || p.threads == 0 {
		return false, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, ErrBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, ErrBadHash
	}
	if len(password) > PasswordMaxBytes {
		return false, nil
	}
	p.keyLen = uint32(len(want))
	got := argonKey(password, salt, p)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked against when no user matches, so that a sign-in for
// an unknown email costs what one for a known email costs.
// It is made on first use: a process that never signs anyone in never
// pays for it.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("levqor-no-such-user-password")
	if err != nil {
		return "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	return h
})

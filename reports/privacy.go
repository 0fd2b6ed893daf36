package reports

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// pseudonymPrefix starts every pseudonym: "u-" and 16 lower-case hex
// digits (64 bits of HMAC-SHA256).
const pseudonymPrefix = "u-"

// privacy applies PrivacyConfig to events and to user names in queries.
type privacy struct {
	key       []byte // nil: pseudonymization off
	dropPaths bool
}

// newPrivacy loads the pseudonym key: the configured one, else the one in
// <dir>/pseudonym.key, else a new random key written there (0600).
func newPrivacy(cfg Config) (*privacy, error) {
	p := &privacy{dropPaths: cfg.Privacy.DropPaths}
	if !cfg.Privacy.PseudonymizeUsers {
		return p, nil
	}
	if k := cfg.Privacy.PseudonymKey; k != "" {
		p.key = []byte(k)
		return p, nil
	}
	path := filepath.Join(cfg.Dir, "pseudonym.key")
	b, err := os.ReadFile(path)
	if err == nil {
		key, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) < 16 {
			return nil, fmt.Errorf("reports: pseudonym key %s: must be at least 32 hex digits", path)
		}
		p.key = key
		return p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return newPrivacy(cfg) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	p.key = key
	return p, nil
}

// User maps a user name to what is stored: itself, or its pseudonym when
// pseudonymization is on. A name that already is a pseudonym is kept, so
// queries may use either the real name or the pseudonym shown in reports.
func (p *privacy) User(name string) string {
	if p == nil || p.key == nil || name == "" || isPseudonym(name) {
		return name
	}
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(name))
	sum := m.Sum(nil)
	return pseudonymPrefix + hex.EncodeToString(sum[:8])
}

func isPseudonym(s string) bool {
	if len(s) != len(pseudonymPrefix)+16 || !strings.HasPrefix(s, pseudonymPrefix) {
		return false
	}
	for _, c := range s[len(pseudonymPrefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

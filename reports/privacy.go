package reports

import (
	"context"
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
	"time"
)

// pseudonymPrefix starts every pseudonym: "u-" and 16 lower-case hex
// digits (64 bits of HMAC-SHA256).
const pseudonymPrefix = "u-"

// privacy applies PrivacyConfig to events and to user names in queries.
type privacy struct {
	key       []byte // nil: pseudonymization off
	dropPaths bool
}

// KeySource is implemented by stores that hand every edge the same
// pseudonym key (redisstore keeps one in Redis), so a user has one
// pseudonym in the combined report.
type KeySource interface {
	// PseudonymKey returns the shared key, creating it on first use.
	PseudonymKey(ctx context.Context) ([]byte, error)
}

// newPrivacy loads the pseudonym key: the configured one; else, when the
// store shares one (KeySource), that key (also kept in
// <dir>/pseudonym.key for starts while the store is unreachable); else
// the one in <dir>/pseudonym.key, generated there (0600) on first use.
func newPrivacy(cfg Config, store Store) (*privacy, error) {
	p := &privacy{dropPaths: cfg.Privacy.DropPaths}
	if !cfg.Privacy.PseudonymizeUsers {
		return p, nil
	}
	if k := cfg.Privacy.PseudonymKey; k != "" {
		p.key = []byte(k)
		return p, nil
	}
	path := filepath.Join(cfg.Dir, "pseudonym.key")
	if ks, ok := store.(KeySource); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		key, err := ks.PseudonymKey(ctx)
		cancel()
		if err == nil && len(key) >= 16 {
			if err := writeKeyFile(path, key, true); err != nil {
				return nil, err
			}
			p.key = key
			return p, nil
		}
		// The store is unreachable: the copy from an earlier start is
		// the shared key; a new local key would split the report.
		key, ferr := readKeyFile(path)
		if ferr != nil {
			return nil, fmt.Errorf("reports: pseudonym key: the store's shared key is unavailable (%v) and there is no local copy: %w", err, ferr)
		}
		p.key = key
		return p, nil
	}
	key, err := readKeyFile(path)
	if err == nil {
		p.key = key
		return p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := writeKeyFile(path, key, false); errors.Is(err, fs.ErrExist) {
		return newPrivacy(cfg, store) // another process created it first
	} else if err != nil {
		return nil, err
	}
	p.key = key
	return p, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reports: pseudonym key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("reports: pseudonym key %s: must be at least 32 hex digits", path)
	}
	return key, nil
}

// writeKeyFile stores key as hex, mode 0600; replace overwrites an
// existing file (atomically), otherwise an existing file is fs.ErrExist.
func writeKeyFile(path string, key []byte, replace bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("reports: pseudonym key: %w", err)
	}
	data := []byte(hex.EncodeToString(key) + "\n")
	if replace {
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			return nil
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("reports: pseudonym key: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("reports: pseudonym key: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("reports: pseudonym key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("reports: pseudonym key: %w", err)
	}
	return nil
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

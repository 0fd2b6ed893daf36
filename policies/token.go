package policies

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tokenPrefix starts every token the Service generates:
// "cordon_<id>_<secret>".
const tokenPrefix = "cordon_"

// AdminTokenEnv is the environment variable that sets the first admin
// token.
const AdminTokenEnv = "CORDON_ADMIN_TOKEN"

// AdminTokenFile is the file under the data directory holding a generated
// first admin token.
const AdminTokenFile = "admin.token"

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenID returns the record ID a token is stored under: the ID embedded
// in generated tokens, or "bootstrap-<hash prefix>" for tokens given by
// the operator (CORDON_ADMIN_TOKEN).
func tokenID(token string) string {
	if rest, ok := strings.CutPrefix(token, tokenPrefix); ok {
		if id, _, ok := strings.Cut(rest, "_"); ok && len(id) == 12 {
			return id
		}
	}
	return "bootstrap-" + tokenHash(token)[:12]
}

// CreateToken creates an API token with a role and returns the token
// (shown once; only its hash is stored) and its record.
func (s *Service) CreateToken(ctx context.Context, a Actor, name string, role Role) (string, TokenRecord, error) {
	if err := checkActor(a); err != nil {
		return "", TokenRecord{}, err
	}
	if !a.Role.Allows(PermAdmin) {
		return "", TokenRecord{}, &ForbiddenError{Role: a.Role, Permission: PermAdmin, What: "create tokens"}
	}
	if !role.Valid() {
		return "", TokenRecord{}, fmt.Errorf("policies: create token: %w: unknown role %q: want admin, secops, netops or auditor", ErrBadRequest, role)
	}
	if !validName(name) {
		return "", TokenRecord{}, fmt.Errorf("policies: create token: %w: name %q: want letters, digits, '.', '_', '-', '@' (at most 128)", ErrBadRequest, name)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", TokenRecord{}, fmt.Errorf("policies: create token: %w", err)
	}
	id := randomID(6)
	token := tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	rec := TokenRecord{ID: id, Name: name, Role: role, Hash: tokenHash(token), Created: time.Now().UTC(), CreatedBy: a.Name}
	if err := s.store.PutToken(ctx, rec); err != nil {
		return "", TokenRecord{}, fmt.Errorf("policies: create token: %w", err)
	}
	if err := s.audit(ctx, a, "token.create", id, fmt.Sprintf("%s (%s)", name, role)); err != nil {
		// Nothing unaudited may stay: take the token back.
		if derr := s.store.DeleteToken(ctx, id); derr != nil {
			s.log.Error("token created but neither audited nor removed", "token_id", id, "err", derr)
		}
		return "", TokenRecord{}, err
	}
	return token, rec, nil
}

// RevokeToken deletes a token; it stops working at once.
func (s *Service) RevokeToken(ctx context.Context, a Actor, id string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if !a.Role.Allows(PermAdmin) {
		return &ForbiddenError{Role: a.Role, Permission: PermAdmin, What: "revoke tokens"}
	}
	rec, err := s.store.GetToken(ctx, id)
	if err != nil {
		return fmt.Errorf("policies: revoke token %s: %w", id, err)
	}
	if err := s.store.DeleteToken(ctx, id); err != nil {
		return fmt.Errorf("policies: revoke token %s: %w", id, err)
	}
	if err := s.audit(ctx, a, "token.revoke", id, rec.Name); err != nil {
		// Nothing unaudited may stay: restore the token and report.
		if perr := s.store.PutToken(ctx, rec); perr != nil {
			s.log.Error("token revoked but neither audited nor restored", "token_id", id, "err", perr)
		}
		return err
	}
	return nil
}

// Tokens lists token records (hashes included; the API strips them).
func (s *Service) Tokens(ctx context.Context) ([]TokenRecord, error) {
	ts, err := s.store.ListTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: tokens: %w", err)
	}
	return ts, nil
}

// AuthenticateToken returns the record of a bearer token, comparing hashes
// in constant time; ErrUnauthorized for an unknown token.
func (s *Service) AuthenticateToken(ctx context.Context, token string) (TokenRecord, error) {
	if token == "" || len(token) > 512 {
		return TokenRecord{}, ErrUnauthorized
	}
	rec, err := s.store.GetToken(ctx, tokenID(token))
	if errors.Is(err, ErrNotFound) {
		return TokenRecord{}, ErrUnauthorized
	}
	if err != nil {
		return TokenRecord{}, fmt.Errorf("policies: authenticate token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(tokenHash(token)), []byte(rec.Hash)) != 1 {
		return TokenRecord{}, ErrUnauthorized
	}
	return rec, nil
}

// EnsureAdminToken makes sure a first admin token exists and returns it.
// The token is envToken when set (CORDON_ADMIN_TOKEN; at least 16
// characters), else the one in <dataDir>/admin.token, else a new random
// token written there with mode 0600 (generated is then true: log it
// once). Its hash is stored as an admin token record. With envToken set,
// other first-admin tokens (an earlier CORDON_ADMIN_TOKEN or a generated
// one) are revoked, so rotating the variable retires the old value.
func (s *Service) EnsureAdminToken(ctx context.Context, dataDir, envToken string) (token string, generated bool, err error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	switch {
	case envToken != "":
		token = strings.TrimSpace(envToken)
		if len(token) < 16 {
			return "", false, fmt.Errorf("policies: %s: %w: at least 16 characters", AdminTokenEnv, ErrBadRequest)
		}
	default:
		b, rerr := os.ReadFile(path)
		switch {
		case rerr == nil && len(strings.TrimSpace(string(b))) >= 16:
			token = strings.TrimSpace(string(b))
		case rerr == nil || errors.Is(rerr, os.ErrNotExist):
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return "", false, fmt.Errorf("policies: admin token: %w", err)
			}
			token = "cordon-admin-" + base64.RawURLEncoding.EncodeToString(secret)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return "", false, fmt.Errorf("policies: admin token: %w", err)
			}
			if err := writeFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
				return "", false, fmt.Errorf("policies: admin token: %w", err)
			}
			generated = true
		default:
			return "", false, fmt.Errorf("policies: admin token: %w", rerr)
		}
	}
	id := tokenID(token)
	if envToken != "" {
		// CORDON_ADMIN_TOKEN is the deployment's first admin token: a
		// previous value (rotation) stops working.
		ts, err := s.store.ListTokens(ctx)
		if err != nil {
			return "", false, fmt.Errorf("policies: admin token: %w", err)
		}
		for _, t := range ts {
			if t.ID == id || !strings.HasPrefix(t.ID, "bootstrap-") {
				continue
			}
			if err := s.store.DeleteToken(ctx, t.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return "", false, fmt.Errorf("policies: admin token: %w", err)
			}
			if err := s.audit(ctx, Actor{Name: "system", Role: RoleAdmin, Source: SourceSystem}, "token.revoke", t.ID, "replaced by "+AdminTokenEnv); err != nil {
				return "", false, err
			}
		}
	}
	if rec, err := s.store.GetToken(ctx, id); err == nil && rec.Hash == tokenHash(token) && rec.Role == RoleAdmin {
		return token, generated, nil
	}
	rec := TokenRecord{ID: id, Name: "admin", Role: RoleAdmin, Hash: tokenHash(token), Created: time.Now().UTC(), CreatedBy: "system"}
	if err := s.store.PutToken(ctx, rec); err != nil {
		return "", false, fmt.Errorf("policies: admin token: %w", err)
	}
	if err := s.audit(ctx, Actor{Name: "system", Role: RoleAdmin, Source: SourceSystem}, "token.create", id, "first admin token"); err != nil {
		return "", false, err
	}
	return token, generated, nil
}

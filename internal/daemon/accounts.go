package daemon

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hppd/hppd/hpp"
	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna"
	"github.com/hppd/hppd/webhook"
)

// KlarnaAccount is the client of one Klarna account and what its last call
// said of Klarna.
type KlarnaAccount struct {
	Name   string
	Client *klarna.Client
	// up is -1 before the first answer, then 1 (an answer neither 5xx nor
	// 429) or 0.
	up atomic.Int32
}

// Up reports the account's Klarna state: known is false before its first
// call.
func (a *KlarnaAccount) Up() (up, known bool) {
	v := a.up.Load()
	return v == 1, v >= 0
}

// KlarnaStatus is each account's Klarna state ("up", "down", or "unknown"
// before its first call), for /readyz.
func (m *Main) KlarnaStatus() map[string]string {
	out := make(map[string]string, len(m.KlarnaAccounts))
	for _, a := range m.KlarnaAccounts {
		switch up, known := a.Up(); {
		case !known:
			out[a.Name] = "unknown"
		case up:
			out[a.Name] = "up"
		default:
			out[a.Name] = "down"
		}
	}
	return out
}

// klarnaClients makes one client per account, each with its own base URL,
// credentials and rate limits; m.Klarna is the default account's.
func (m *Main) klarnaClients() ([]hpp.Account, error) {
	cfg := m.Config
	list := cfg.Accounts
	if len(list) == 0 {
		// A Config not made by config.Load (tests): the HPPD_KLARNA_* fields.
		list = []config.KlarnaAccount{{Name: hpp.DefaultAccount, Region: cfg.KlarnaRegion, Environment: cfg.KlarnaEnv,
			BaseURL: cfg.KlarnaBaseURL, Username: cfg.KlarnaUsername, Password: cfg.KlarnaPassword,
			CreateRate: cfg.KlarnaCreateRate, OtherRate: cfg.KlarnaOtherRate, TokenOrderRate: cfg.KlarnaTokenOrderRate}}
	}
	m.KlarnaAccounts = nil
	var out []hpp.Account
	for _, a := range list {
		ka := &KlarnaAccount{Name: a.Name}
		ka.up.Store(-1)
		hooks := m.Hooks
		name := a.Name
		c, err := klarna.New(klarna.Config{
			BaseURL: a.BaseURL, Region: a.Region, Environment: a.Environment,
			Username: a.Username, Password: a.Password, Timeout: cfg.KlarnaTimeout,
			CreateSessionRate: a.CreateRate, OtherRate: a.OtherRate, TokenOrderRate: a.TokenOrderRate,
			Version: Version, Logger: m.Logger.With("component", "klarna", "account", name), HTTPClient: m.HTTPClient,
			Observer: func(op string, status int, d time.Duration, err error) {
				up := int32(0)
				if status > 0 && status < 500 && status != 429 {
					up = 1
				}
				ka.up.Store(up)
				if hooks.Klarna != nil {
					hooks.Klarna(op, status, d, err)
				}
				if hooks.KlarnaAccount != nil {
					hooks.KlarnaAccount(name, op, status, d, err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("klarna client of account %s: %w", name, err)
		}
		ka.Client = c
		m.KlarnaAccounts = append(m.KlarnaAccounts, ka)
		out = append(out, hpp.Account{Name: name, Klarna: c, Countries: a.Countries,
			CreateRate: a.CreateRate, OtherRate: a.OtherRate, TokenOrderRate: a.TokenOrderRate})
	}
	m.Klarna = m.KlarnaAccounts[0].Client
	return out, nil
}

// ReloadKeys re-reads every JWT key file (SIGHUP): the global
// HPPD_JWT_HS256_KEY_FILE and HPPD_JWT_PUBLIC_KEYS_FILE, and each
// storefront's key files. The new keys replace the old ones in one step; on
// any error (a file that does not read, or holds no valid key) nothing
// changes and the error names the file. A global key given literally in the
// environment stays as it is.
func (m *Main) ReloadKeys() error {
	if m.auth == nil {
		return errors.New("hppd is not running")
	}
	var files []string
	for _, f := range []string{m.Config.JWTHS256KeyFile, m.Config.JWTPublicKeysFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	hs, pub, err := config.ReadGlobalKeys(m.Config)
	if err != nil {
		return err
	}
	global := webhook.Keys{PublicPEM: pub}
	if len(hs) > 0 {
		global.HS256 = [][]byte{hs}
	}
	keys := map[string]webhook.StorefrontKeys{}
	for _, s := range m.Config.Storefronts {
		if s.JWTHS256KeyFile == "" && s.JWTPublicKeysFile == "" {
			continue
		}
		hs, pub, err := config.ReadStorefrontKeys(s)
		if err != nil {
			return err
		}
		keys[s.Name] = webhook.StorefrontKeys{HS256: hs, PublicPEM: pub}
		for _, f := range []string{s.JWTHS256KeyFile, s.JWTPublicKeysFile} {
			if f != "" {
				files = append(files, f)
			}
		}
	}
	if err := m.auth.ReplaceKeys(global, keys); err != nil {
		return fmt.Errorf("JWT keys (files %s): %w", strings.Join(files, ", "), err)
	}
	m.Logger.Info("JWT keys reloaded", "files", files, "storefronts", len(keys))
	return nil
}

// newAuthenticator verifies storefront JWTs with the global HPPD_JWT_* keys
// and each storefront's own keys.
func newAuthenticator(cfg *config.Config, now func() time.Time) (*webhook.Authenticator, error) {
	var auth *webhook.Authenticator
	var err error
	if len(cfg.JWTHS256Key) == 0 && len(cfg.JWTPublicKeys) == 0 {
		auth, err = webhook.NewStorefrontAuthenticator(cfg.JWTAudience, now)
	} else {
		auth, err = webhook.NewAuthenticator(cfg.JWTHS256Key, cfg.JWTPublicKeys, cfg.JWTAudience, now)
	}
	if err != nil {
		return nil, fmt.Errorf("JWT keys: %w", err)
	}
	auth.SetMaxLifetime(cfg.JWTMaxLifetime)
	for _, s := range cfg.Storefronts {
		if len(s.JWTHS256Keys) == 0 && len(s.JWTPublicKeys) == 0 {
			continue
		}
		if err := auth.SetStorefrontKeys(s.Name, s.JWTHS256Keys, s.JWTPublicKeys); err != nil {
			return nil, fmt.Errorf("JWT keys of storefront %s: %w", s.Name, err)
		}
	}
	return auth, nil
}

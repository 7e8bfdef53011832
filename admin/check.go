package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/hppd/hppd/internal/config"
	"github.com/hppd/hppd/klarna"
)

// Results of a Check.
const (
	OK   = "OK"
	Fail = "FAIL"
	Skip = "SKIP" // not checked because something it needs failed
)

// Check is one line of `hppd check`.
type Check struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	Detail string `json:"detail"`
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	for _, c := range checks {
		if c.Result == Fail {
			return true
		}
	}
	return false
}

// CheckConfig reports a configuration error (which names the variables and
// never holds a secret).
func CheckConfig(err error) Check {
	if err != nil {
		return Check{Name: "configuration", Result: Fail, Detail: strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	return Check{Name: "configuration", Result: OK, Detail: "every HPPD_* variable is valid"}
}

// CheckData checks the data file through b.
func CheckData(ctx context.Context, b Backend) Check {
	c := Check{Name: "data file"}
	by := "opened directly: no hppd running"
	if b.Live() {
		by = "checked by the " + b.Source()
	}
	rep, err := b.Check(ctx)
	if err != nil {
		c.Result, c.Detail = Fail, err.Error()
		return c
	}
	if rep.Error != "" {
		c.Result, c.Detail = Fail, strings.ReplaceAll(rep.Error, "\n", "; ")+" ("+by+")"
		return c
	}
	c.Result = OK
	c.Detail = fmt.Sprintf("%s is sound: %d sessions, %d charges, %d jobs (%s)", rep.Path, rep.Sessions, rep.Charges, rep.Jobs, by)
	return c
}

// CheckKlarna makes one read with the configured credentials: the HPP status
// of a session id nobody has. Klarna answers 404 to credentials it accepts
// (FACTS 1.1: "expired or could not be found") and 401 or 403 to credentials
// it refuses; no answer means Klarna is unreachable. The read is not resent.
// version is hppd's, sent in the User-Agent; hc may be nil (the Klarna
// client's default transport).
func CheckKlarna(ctx context.Context, cfg *config.Config, version string, hc *http.Client) Check {
	return checkKlarna(ctx, "klarna credentials", config.KlarnaAccount{BaseURL: cfg.KlarnaBaseURL, Region: cfg.KlarnaRegion, Environment: cfg.KlarnaEnv,
		Username: cfg.KlarnaUsername, Password: cfg.KlarnaPassword}, cfg, version, hc)
}

// CheckKlarnaAccounts is CheckKlarna for every Klarna account, one check
// each (named after the account when there are several).
func CheckKlarnaAccounts(ctx context.Context, cfg *config.Config, version string, hc *http.Client) []Check {
	if len(cfg.Accounts) <= 1 && cfg.KlarnaUsername != "" {
		return []Check{CheckKlarna(ctx, cfg, version, hc)}
	}
	var out []Check
	for _, a := range cfg.Accounts {
		out = append(out, checkKlarna(ctx, "klarna credentials of account "+a.Name, a, cfg, version, hc))
	}
	return out
}

func checkKlarna(ctx context.Context, name string, a config.KlarnaAccount, cfg *config.Config, version string, hc *http.Client) Check {
	c := Check{Name: name}
	kl, err := klarna.New(klarna.Config{
		BaseURL: a.BaseURL, Region: a.Region, Environment: a.Environment,
		Username: a.Username, Password: a.Password, Timeout: cfg.KlarnaTimeout,
		MaxAttempts: 1, CreateSessionRate: -1, OtherRate: -1, TokenOrderRate: -1, Version: version, HTTPClient: hc,
	})
	if err != nil {
		c.Result, c.Detail = Fail, fmt.Sprintf("klarna client: %v", err)
		return c
	}
	at := kl.BaseURL()
	_, err = kl.ReadHPPSession(ctx, "hppd-check-"+uuid.NewString())
	var ke *klarna.Error
	switch {
	case err == nil, klarna.IsNotFound(err):
		c.Result, c.Detail = OK, "accepted by "+at+" (a read of an unknown HPP session answered 404)"
	case !errors.As(err, &ke):
		c.Result, c.Detail = Fail, fmt.Sprintf("read at %s: %v", at, err)
	case ke.HTTPStatus == http.StatusUnauthorized || ke.HTTPStatus == http.StatusForbidden:
		c.Result, c.Detail = Fail, "refused by "+at+" ("+strconv.Itoa(ke.HTTPStatus)+" "+http.StatusText(ke.HTTPStatus)+
			"): check the account's username, password and region/environment (HPPD_KLARNA_* or klarna_accounts)"
	case ke.HTTPStatus == 0:
		c.Result, c.Detail = Fail, "Klarna unreachable at "+at+": "+err.Error()
	default:
		c.Result, c.Detail = Fail, "unexpected answer from "+at+": "+err.Error()
	}
	return c
}

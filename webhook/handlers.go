package webhook

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/hppd/hppd/api"
	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
)

// callbackBody checks a Klarna callback's session id, secret and hppId
// (CheckCallback) and only then reads its bounded body; on a refusal it has
// answered, and ok is false. chk is what the check read.
func (s *Server) callbackBody(c *gin.Context, kind hpp.CallbackKind, what, id, hppID string) (chk *hpp.CheckedCallback, body []byte, ok bool) {
	chk, err := s.svc.CheckCallback(kind, id, c.Query("secret"), hppID)
	if err != nil {
		s.refuseCallback(c, what, id, err)
		return nil, nil, false
	}
	body, err = readBody(c, hpp.MaxCallbackBody)
	if err != nil {
		s.svc.Stats.CallbacksRejected.Add(1)
		s.fail(c, err)
		return nil, nil, false
	}
	return chk, body, true
}

// callback takes Klarna's status_update. Order: check the session id's
// format, the secret and the hppId (CheckCallback), only then read the
// bounded body, decode and commit, from the session the check read
// (HandleCheckedCallback); 2xx only once the event is on disk. An unknown
// session and a wrong secret get the same 404, and their body is never read.
func (s *Server) callback(c *gin.Context) {
	id := c.Param("id")
	chk, body, ok := s.callbackBody(c, hpp.CallbackHPPStatus, "callback rejected", id, c.Query("hppId"))
	if !ok {
		return
	}
	res, err := s.svc.HandleCheckedCallback(chk, c.Query("secret"), c.Query("hppId"), body)
	if err != nil {
		s.refused(c, "callback rejected", id, err)
		s.fail(c, err)
		return
	}
	if res.Resync {
		s.log.Warn("callback body unusable; session re-read", "request_id", c.GetString("request_id"), "session_id", id, "bytes", len(body))
	}
	c.Data(http.StatusOK, jsonContentType, callbackAnswers[b2i(res.Duplicate)][b2i(res.Resync)])
}

// callbackAnswers are the four answers a taken callback can get, indexed by
// duplicate and resync, encoded once: the bytes c.JSON would write for
// gin.H{"status": "accepted", "duplicate": …, "resync": …}, without a map
// marshalled per callback on the hot path.
var callbackAnswers = func() (a [2][2][]byte) {
	for d := range 2 {
		for r := range 2 {
			b, err := json.Marshal(gin.H{"status": "accepted", "duplicate": d == 1, "resync": r == 1})
			if err != nil {
				panic("webhook: encode a callback answer: " + err.Error())
			}
			a[d][r] = b
		}
	}
	return a
}()

// jsonContentType is the Content-Type c.JSON sets.
const jsonContentType = "application/json; charset=utf-8"

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// redirect records a shopper coming back and sends them to the storefront.
func (s *Server) redirect(c *gin.Context) {
	to, err := s.svc.HandleRedirect(c.Request.Context(), c.Param("id"), c.Param("kind"), c.Query("hppId"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, to)
}

type sessionBody struct {
	core.Purchase
	CustomerToken  string          `json:"customer_token"`
	PlaceOrderMode string          `json:"place_order_mode"`
	Integration    string          `json:"integration"`
	ReturnURLs     core.ReturnURLs `json:"return_urls"`
}

func (s *Server) createSession(c *gin.Context) {
	body, err := readBody(c, MaxAPIBody)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b sessionBody
	if err := decodeStrict(body, &b); err != nil {
		s.fail(c, err)
		return
	}
	sess, err := s.svc.CreateSession(c.Request.Context(), c.GetString("storefront"), hpp.SessionRequest{
		Purchase: b.Purchase, CustomerToken: b.CustomerToken, PlaceOrderMode: b.PlaceOrderMode,
		Integration: b.Integration, ReturnURLs: b.ReturnURLs, IdempotencyKey: c.GetString("idempotency_key"),
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, api.FromSession(sess))
}

func listQuery(c *gin.Context, valid func(string) bool) (core.ListQuery, error) {
	q := core.ListQuery{Storefront: c.GetString("storefront"), Status: c.Query("status"), Cursor: c.Query("cursor"), Limit: 50}
	if q.Status != "" && !valid(q.Status) {
		return q, core.Invalid("status", "%q is not a status", q.Status)
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return q, core.Invalid("limit", "must be a number from 1 to 500")
		}
		q.Limit = n
	}
	return q, nil
}

func (s *Server) listSessions(c *gin.Context) {
	q, err := listQuery(c, func(v string) bool { return core.SessionStatus(v).Valid() })
	if err != nil {
		s.fail(c, err)
		return
	}
	list, next, err := s.svc.Sessions(q)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := api.List[api.Session]{Data: make([]api.Session, 0, len(list)), NextCursor: next}
	for _, v := range list {
		out.Data = append(out.Data, api.FromSession(v))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getSession(c *gin.Context) {
	sess, err := s.svc.Session(c.GetString("storefront"), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, api.FromSession(sess))
}

func (s *Server) cancelSession(c *gin.Context) {
	if _, err := readBody(c, MaxAPIBody); err != nil {
		s.fail(c, err)
		return
	}
	sess, err := s.svc.CancelSession(c.Request.Context(), c.GetString("storefront"), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, api.FromSession(sess))
}

func (s *Server) authorizeSession(c *gin.Context) {
	body, err := readBody(c, MaxAPIBody)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b struct {
		AuthorizationToken string `json:"authorization_token"`
	}
	if err := decodeStrict(body, &b); err != nil {
		s.fail(c, err)
		return
	}
	sess, err := s.svc.Authorize(c.Request.Context(), c.GetString("storefront"), c.Param("id"), b.AuthorizationToken)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, api.FromSession(sess))
}

func (s *Server) declineSession(c *gin.Context) {
	body, err := readBody(c, MaxAPIBody)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b struct {
		Reason string `json:"reason"`
	}
	if len(body) > 0 {
		if err := decodeStrict(body, &b); err != nil {
			s.fail(c, err)
			return
		}
	}
	if len(b.Reason) > 255 {
		s.fail(c, core.Invalid("reason", "is longer than 255 characters"))
		return
	}
	sess, err := s.svc.DeclineSDK(c.GetString("storefront"), c.Param("id"), b.Reason)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, api.FromSession(sess))
}

type chargeBody struct {
	core.Purchase
	CustomerToken   string          `json:"customer_token"`
	CustomerPresent *bool           `json:"customer_present"`
	AutoCapture     bool            `json:"auto_capture"`
	ReturnURLs      core.ReturnURLs `json:"return_urls"`
	Integration     string          `json:"integration"`
}

func (s *Server) chargeView(ch *core.Charge) api.Charge {
	var sess *core.Session
	if ch.SessionID != "" {
		sess, _ = s.svc.Session(ch.Storefront, ch.SessionID)
	}
	return api.FromCharge(ch, sess)
}

func (s *Server) createCharge(c *gin.Context) {
	body, err := readBody(c, MaxAPIBody)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b chargeBody
	if err := decodeStrict(body, &b); err != nil {
		s.fail(c, err)
		return
	}
	claim, _ := c.Value("idempotency_claim").(*hpp.KeyClaim)
	ch, err := s.svc.CreateCharge(c.Request.Context(), c.GetString("storefront"), hpp.ChargeRequest{
		CustomerToken: b.CustomerToken, CustomerPresent: b.CustomerPresent, Purchase: b.Purchase,
		AutoCapture: b.AutoCapture, ReturnURLs: b.ReturnURLs, Integration: b.Integration,
		IdempotencyKey: c.GetString("idempotency_key"),
		Key:            claim, Answer: chargeAnswer,
	})
	if status, body, ok := claim.Answered(); ok {
		// The fallback recorded this answer with its session's link: send
		// exactly what a retry with the key will be sent.
		c.Data(status, jsonContentType, body)
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, s.chargeView(ch))
}

// chargeAnswer renders POST /v1/charges' success answer as c.JSON would.
func chargeAnswer(ch *core.Charge, sess *core.Session) (int, []byte, error) {
	b, err := json.Marshal(api.FromCharge(ch, sess))
	return http.StatusCreated, b, err
}

func (s *Server) listCharges(c *gin.Context) {
	q, err := listQuery(c, func(v string) bool { return core.ChargeStatus(v).Valid() })
	if err != nil {
		s.fail(c, err)
		return
	}
	list, next, err := s.svc.Charges(q)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := api.List[api.Charge]{Data: make([]api.Charge, 0, len(list)), NextCursor: next}
	for _, v := range list {
		out.Data = append(out.Data, s.chargeView(v))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getCharge(c *gin.Context) {
	ch, err := s.svc.Charge(c.GetString("storefront"), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, s.chargeView(ch))
}

func (s *Server) fallback(c *gin.Context) {
	body, err := readBody(c, MaxAPIBody)
	if err != nil {
		s.fail(c, err)
		return
	}
	var b struct {
		Integration string          `json:"integration"`
		ReturnURLs  core.ReturnURLs `json:"return_urls"`
	}
	if len(body) > 0 {
		if err := decodeStrict(body, &b); err != nil {
			s.fail(c, err)
			return
		}
	}
	ch, err := s.svc.Fallback(c.Request.Context(), c.GetString("storefront"), c.Param("id"), b.Integration, b.ReturnURLs)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, s.chargeView(ch))
}

func (s *Server) getToken(c *gin.Context) {
	v, err := s.svc.Token(c.Request.Context(), c.GetString("storefront"), c.Param("token"))
	if err != nil {
		s.fail(c, err)
		return
	}
	out := api.Token{CustomerToken: api.MaskToken(c.Param("token")), KlarnaAccount: v.KlarnaAccount}
	if t := v.Info; t != nil {
		out.LastChargeID, out.LastOutcome, out.Recovered, out.RecoveredBy = t.LastChargeID, string(t.LastOutcome), t.Recovered, t.RecoveredBy
		if !t.LastChargeAt.IsZero() {
			at := t.LastChargeAt
			out.LastChargeAt = &at
		}
		if !t.RecoveredAt.IsZero() {
			at := t.RecoveredAt
			out.RecoveredAt = &at
		}
	}
	if k := v.Klarna; k != nil {
		out.Klarna = &api.TokenKlarna{Status: k.Status, PaymentMethodType: k.PaymentMethodType}
		if k.Card != nil {
			out.Klarna.MaskedNumber, out.Klarna.Brand, out.Klarna.ExpiryDate = k.Card.MaskedNumber, k.Card.Brand, k.Card.ExpiryDate
		} else if k.DirectDebit != nil {
			out.Klarna.MaskedNumber = k.DirectDebit.MaskedNumber
		}
	}
	if e := v.KlarnaError; e != nil {
		out.KlarnaError = &api.Error{HTTPStatus: e.HTTPStatus, ErrorCode: e.Code, ErrorMessages: e.Messages, CorrelationID: e.CorrelationID}
	}
	c.JSON(http.StatusOK, out)
}

package webhook

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
)

// authorizationCallback takes Klarna's KP authorization callback of an SDK
// session. Order: bound the body, check the secret, then decode, match the
// KP session id and commit; 2xx only once the authorization and its order job
// are on disk.
func (s *Server) authorizationCallback(c *gin.Context) {
	id := c.Param("id")
	_, body, ok := s.callbackBody(c, hpp.CallbackKPAuthorization, "authorization callback rejected", id, "")
	if !ok {
		return
	}
	res, err := s.svc.HandleAuthorization(id, c.Query("secret"), body)
	if err != nil {
		s.refused(c, "authorization callback rejected", id, err)
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "accepted", "duplicate": res.Duplicate})
}

// notification takes Klarna's fraud notification of a session's order. Order:
// check the id and the secret (CheckCallback), bound the body, decode, match the order id, then read the
// order from Order Management; only that read changes anything.
func (s *Server) notification(c *gin.Context) {
	id := c.Param("id")
	_, body, ok := s.callbackBody(c, hpp.CallbackKPNotification, "notification rejected", id, "")
	if !ok {
		return
	}
	res, err := s.svc.HandleNotification(c.Request.Context(), id, c.Query("secret"), body)
	if err != nil {
		s.refused(c, "notification rejected", id, err)
		s.fail(c, err)
		return
	}
	if res.Deferred {
		c.JSON(http.StatusAccepted, gin.H{"status": "verifying"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "verified", "fraud_status": res.FraudStatus, "changed": res.Changed})
}

// refuseCallback answers a callback CheckCallback refused. The session id is
// logged only when it has hppd's format: an outsider's id, of any length, is
// never written to the log.
//
// The connection is closed after the answer: net/http would otherwise read
// (and wait for) the unread body to keep the connection alive, which is the
// cost this refusal avoids.
func (s *Server) refuseCallback(c *gin.Context, msg, id string, err error) {
	c.Header("Connection", "close")
	// And it would drain up to 256 KiB of it when the request ends, holding
	// the connection for as long as a slow sender trickles: a read deadline
	// in the past ends that read at once.
	defer func() { _ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now()) }()
	s.refused(c, msg, id, err)
	s.fail(c, err)
}

// refused notes why a callback was refused on the request's access log line,
// which is rate-limited for requests no storefront made (accesslog.go): an
// outsider who knows a session id cannot write a log line per request. The
// session id goes on the line only when it has hppd's format, so an
// outsider's id, of any length, is never written to the log.
func (s *Server) refused(c *gin.Context, msg, id string, err error) {
	c.Set("refusal", msg+": "+string(core.ErrorCodeOf(err)))
	if core.ValidID(core.SessionIDPrefix, id) {
		c.Set("refused_session_id", id)
	}
}

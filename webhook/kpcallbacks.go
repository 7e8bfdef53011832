package webhook

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/hppd/hppd/core"
	"github.com/hppd/hppd/hpp"
)

// authorizationCallback takes Klarna's KP authorization callback of an SDK
// session. Order: bound the body, check the secret, then decode, match the
// KP session id and commit; 2xx only once the authorization and its order job
// are on disk.
func (s *Server) authorizationCallback(c *gin.Context) {
	body, err := readBody(c, hpp.MaxCallbackBody)
	if err != nil {
		s.svc.Stats.CallbacksRejected.Add(1)
		s.fail(c, err)
		return
	}
	id := c.Param("id")
	res, err := s.svc.HandleAuthorization(id, c.Query("secret"), body)
	if err != nil {
		s.log.Info("authorization callback rejected", "request_id", c.GetString("request_id"), "session_id", id, "code", core.ErrorCodeOf(err))
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "accepted", "duplicate": res.Duplicate})
}

// notification takes Klarna's fraud notification of a session's order. Order:
// bound the body, check the secret, decode, match the order id, then read the
// order from Order Management; only that read changes anything.
func (s *Server) notification(c *gin.Context) {
	body, err := readBody(c, hpp.MaxCallbackBody)
	if err != nil {
		s.svc.Stats.CallbacksRejected.Add(1)
		s.fail(c, err)
		return
	}
	id := c.Param("id")
	res, err := s.svc.HandleNotification(c.Request.Context(), id, c.Query("secret"), body)
	if err != nil {
		s.log.Info("notification rejected", "request_id", c.GetString("request_id"), "session_id", id, "code", core.ErrorCodeOf(err))
		s.fail(c, err)
		return
	}
	if res.Deferred {
		c.JSON(http.StatusAccepted, gin.H{"status": "verifying"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "verified", "fraud_status": res.FraudStatus, "changed": res.Changed})
}

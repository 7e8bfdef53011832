package klarna

// KPMerchantURLs is KP's merchant_urls object (payments-v1.json
// merchant_urls), used on session create and on place order. Klarna fills
// {session.id} and {order.id} where they appear.
type KPMerchantURLs struct {
	// Confirmation is the merchant's confirmation page (redirect_url flow).
	Confirmation string `json:"confirmation,omitempty"`
	// Notification receives {"order_id", "event_type"} when a PENDING fraud
	// review ends (FACTS 8.4).
	Notification string `json:"notification,omitempty"`
	Push         string `json:"push,omitempty"`
	// Authorization receives {"authorization_token", "session_id"} once the
	// customer authorized the purchase (authorization callback, FACTS 8.3).
	Authorization string `json:"authorization,omitempty"`
}

// AuthorizationCallback is the body Klarna POSTs to merchant_urls.authorization.
type AuthorizationCallback struct {
	AuthorizationToken string `json:"authorization_token"`
	SessionID          string `json:"session_id"`
}

// Notification is the body Klarna POSTs to merchant_urls.notification.
type Notification struct {
	OrderID   string `json:"order_id"`
	EventType string `json:"event_type"`
}

// Notification event types (Klarna's pending-orders guide).
const (
	FraudRiskAccepted = "FRAUD_RISK_ACCEPTED"
	FraudRiskRejected = "FRAUD_RISK_REJECTED"
	FraudRiskStopped  = "FRAUD_RISK_STOPPED"
)

// Fraud statuses of an order (place-order answer, Order Management order).
const (
	FraudAccepted = "ACCEPTED"
	FraudPending  = "PENDING"
	FraudRejected = "REJECTED"
	FraudStopped  = "STOPPED"
)

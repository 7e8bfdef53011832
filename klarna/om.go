package klarna

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// OpReadOrder is Order Management's GET /ordermanagement/v1/orders/{id}.
const OpReadOrder = "read_order"

// OMOrder is the part of Order Management's Order (order-management-v1.json
// Order) hppd reads; Klarna sends many more fields, which are ignored.
type OMOrder struct {
	OrderID            string     `json:"order_id"`
	Status             string     `json:"status,omitempty"`       // AUTHORIZED, PART_CAPTURED, CAPTURED, CANCELLED, EXPIRED, CLOSED
	FraudStatus        string     `json:"fraud_status,omitempty"` // ACCEPTED, PENDING, REJECTED
	OrderAmount        int64      `json:"order_amount,omitempty"`
	PurchaseCurrency   string     `json:"purchase_currency,omitempty"`
	PurchaseCountry    string     `json:"purchase_country,omitempty"`
	MerchantReference1 string     `json:"merchant_reference1,omitempty"`
	MerchantReference2 string     `json:"merchant_reference2,omitempty"`
	KlarnaReference    string     `json:"klarna_reference,omitempty"`
	CreatedAt          *time.Time `json:"created_at,omitempty"`
	ExpiresAt          *time.Time `json:"expires_at,omitempty"`
}

// ReadOrder reads an order from Order Management (GET
// /ordermanagement/v1/orders/{order_id}); a 404 means Klarna knows no such
// order (IsNotFound). It is a read: resent on transient failures like the
// other reads.
func (c *Client) ReadOrder(ctx context.Context, orderID string) (*OMOrder, error) {
	if orderID == "" {
		return nil, invalid(OpReadOrder, "empty order id")
	}
	var out OMOrder
	if err := c.do(ctx, &call{op: OpReadOrder, method: http.MethodGet, path: "/ordermanagement/v1/orders/" + url.PathEscape(orderID), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

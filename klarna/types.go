package klarna

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// This file holds the request and response bodies of the Klarna operations hppd
// uses, with Klarna's exact JSON field names (see ../shared/klarna/openapi).
// Amounts are int64 minor units (2500 is 25.00). The simulator reuses these types.

// OrderLine is one line of a KP session, a KP order or a customer token order
// (the same schema in all three APIs).
type OrderLine struct {
	Type                string              `json:"type,omitempty"`
	Reference           string              `json:"reference,omitempty"`
	Name                string              `json:"name"`
	Quantity            int64               `json:"quantity"`
	QuantityUnit        string              `json:"quantity_unit,omitempty"`
	UnitPrice           int64               `json:"unit_price"`
	TaxRate             int64               `json:"tax_rate"`
	TotalAmount         int64               `json:"total_amount"`
	TotalDiscountAmount int64               `json:"total_discount_amount,omitempty"`
	TotalTaxAmount      int64               `json:"total_tax_amount"`
	MerchantData        string              `json:"merchant_data,omitempty"`
	ProductURL          string              `json:"product_url,omitempty"`
	ImageURL            string              `json:"image_url,omitempty"`
	ProductIdentifiers  *ProductIdentifiers `json:"product_identifiers,omitempty"`
	Subscription        *Subscription       `json:"subscription,omitempty"`
}

// ProductIdentifiers identifies the product of an order line.
type ProductIdentifiers struct {
	Brand                  string `json:"brand,omitempty"`
	CategoryPath           string `json:"category_path,omitempty"`
	GlobalTradeItemNumber  string `json:"global_trade_item_number,omitempty"`
	ManufacturerPartNumber string `json:"manufacturer_part_number,omitempty"`
	Color                  string `json:"color,omitempty"`
	Size                   string `json:"size,omitempty"`
}

// Subscription describes a recurring order line.
type Subscription struct {
	Name          string `json:"name"`
	Interval      string `json:"interval"` // DAY, WEEK, MONTH, YEAR
	IntervalCount int64  `json:"interval_count"`
}

// Address is a billing or shipping address.
type Address struct {
	Attention        string `json:"attention,omitempty"`
	City             string `json:"city,omitempty"`
	Country          string `json:"country,omitempty"`
	Email            string `json:"email,omitempty"`
	FamilyName       string `json:"family_name,omitempty"`
	GivenName        string `json:"given_name,omitempty"`
	OrganizationName string `json:"organization_name,omitempty"`
	Phone            string `json:"phone,omitempty"`
	PostalCode       string `json:"postal_code,omitempty"`
	Region           string `json:"region,omitempty"`
	StreetAddress    string `json:"street_address,omitempty"`
	StreetAddress2   string `json:"street_address2,omitempty"`
	Title            string `json:"title,omitempty"`
}

// Customer is the KP customer object. CustomerToken is hppd's addition for the
// fallback purchase flow (FACTS section 7, item 1): the schema allows extra fields.
type Customer struct {
	DateOfBirth   string `json:"date_of_birth,omitempty"`
	Type          string `json:"type,omitempty"`
	CustomerToken string `json:"customer_token,omitempty"`
}

// KPSessionRequest is the body of POST /payments/v1/sessions.
type KPSessionRequest struct {
	AcquiringChannel   string      `json:"acquiring_channel,omitempty"` // ECOMMERCE, IN_STORE, TELESALES
	Intent             string      `json:"intent,omitempty"`            // buy, tokenize, buy_and_tokenize
	PurchaseCountry    string      `json:"purchase_country"`
	PurchaseCurrency   string      `json:"purchase_currency"`
	Locale             string      `json:"locale,omitempty"`
	OrderAmount        int64       `json:"order_amount"`
	OrderTaxAmount     int64       `json:"order_tax_amount"`
	OrderLines         []OrderLine `json:"order_lines"`
	MerchantReference1 string      `json:"merchant_reference1,omitempty"`
	MerchantReference2 string      `json:"merchant_reference2,omitempty"`
	MerchantData       string      `json:"merchant_data,omitempty"`
	BillingAddress     *Address    `json:"billing_address,omitempty"`
	ShippingAddress    *Address    `json:"shipping_address,omitempty"`
	Customer           *Customer   `json:"customer,omitempty"`
	// MerchantURLs: hppd sets authorization on SDK sessions (FACTS 8.3).
	MerchantURLs *KPMerchantURLs `json:"merchant_urls,omitempty"`
}

// PaymentMethodCategory is one category offered by a KP session.
type PaymentMethodCategory struct {
	Identifier string     `json:"identifier"`
	Name       string     `json:"name"`
	AssetURLs  *AssetURLs `json:"asset_urls,omitempty"`
}

// AssetURLs are the logos of a payment method category.
type AssetURLs struct {
	Descriptive string `json:"descriptive,omitempty"`
	Standard    string `json:"standard,omitempty"`
}

// KPSession is the answer to POST /payments/v1/sessions.
type KPSession struct {
	SessionID               string                  `json:"session_id"`
	ClientToken             string                  `json:"client_token"`
	PaymentMethodCategories []PaymentMethodCategory `json:"payment_method_categories,omitempty"`
}

// KPSessionRead is the answer to GET /payments/v1/sessions/{id}.
type KPSessionRead struct {
	KPSessionRequest
	Status             string     `json:"status,omitempty"` // complete, incomplete
	AuthorizationToken string     `json:"authorization_token,omitempty"`
	ClientToken        string     `json:"client_token,omitempty"`
	ExpiresAt          *time.Time `json:"expires_at,omitempty"`
}

// OrderRequest is the body of POST /payments/v1/authorizations/{token}/order.
type OrderRequest struct {
	PurchaseCountry    string      `json:"purchase_country"`
	PurchaseCurrency   string      `json:"purchase_currency"`
	Locale             string      `json:"locale,omitempty"`
	OrderAmount        int64       `json:"order_amount"`
	OrderTaxAmount     int64       `json:"order_tax_amount"`
	OrderLines         []OrderLine `json:"order_lines"`
	MerchantReference1 string      `json:"merchant_reference1,omitempty"`
	MerchantReference2 string      `json:"merchant_reference2,omitempty"`
	MerchantData       string      `json:"merchant_data,omitempty"`
	AutoCapture        bool        `json:"auto_capture,omitempty"`
	BillingAddress     *Address    `json:"billing_address,omitempty"`
	ShippingAddress    *Address    `json:"shipping_address,omitempty"`
	// MerchantURLs: hppd sets notification, where Klarna reports the
	// outcome of a fraud review (FACTS 8.4).
	MerchantURLs *KPMerchantURLs `json:"merchant_urls,omitempty"`
}

// AuthorizedPaymentMethod tells how an order is paid.
type AuthorizedPaymentMethod struct {
	Type                 string `json:"type"`
	NumberOfDays         int64  `json:"number_of_days,omitempty"`
	NumberOfInstallments int64  `json:"number_of_installments,omitempty"`
}

// UnmarshalJSON reads both shapes Klarna uses (FACTS 8.1): the object of the
// OpenAPI documents ({"type": "invoice", ...}) and the bare string of its
// guides ("invoice", which becomes Type). null leaves m unchanged; any other
// shape is an error (Order's decoder then ignores the field).
func (m *AuthorizedPaymentMethod) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*m = AuthorizedPaymentMethod{Type: s}
		return nil
	}
	type plain AuthorizedPaymentMethod // no UnmarshalJSON: no recursion
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = AuthorizedPaymentMethod(p)
	return nil
}

// Order is the answer to KP place order and to a customer token order.
type Order struct {
	OrderID                 string                   `json:"order_id"`
	FraudStatus             string                   `json:"fraud_status,omitempty"` // ACCEPTED, PENDING, REJECTED
	RedirectURL             string                   `json:"redirect_url,omitempty"`
	AuthorizedPaymentMethod *AuthorizedPaymentMethod `json:"authorized_payment_method,omitempty"`
}

// UnmarshalJSON decodes an order answer leniently (FACTS 8.1): the body must
// be a JSON object, unknown fields are ignored, and a field of an unexpected
// shape is left empty instead of failing the whole answer, because a 2xx
// order answer means the order exists. Only order_id is required to be a
// string; whether it is present is the caller's question (ErrUnusableAnswer).
func (o *Order) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		return errors.New("order answer is null")
	}
	var out Order
	if raw, ok := m["order_id"]; ok {
		if err := json.Unmarshal(raw, &out.OrderID); err != nil {
			return fmt.Errorf("order_id: %w", err)
		}
	}
	// Fields hppd only records: a changed shape costs the field, not the order.
	_ = json.Unmarshal(m["fraud_status"], &out.FraudStatus)
	_ = json.Unmarshal(m["redirect_url"], &out.RedirectURL)
	if raw, ok := m["authorized_payment_method"]; ok {
		var apm AuthorizedPaymentMethod
		if json.Unmarshal(raw, &apm) == nil && apm != (AuthorizedPaymentMethod{}) {
			out.AuthorizedPaymentMethod = &apm
		}
	}
	*o = out
	return nil
}

// TokenOrderRequest is the body of POST /customer-token/v1/tokens/{token}/order.
type TokenOrderRequest struct {
	PurchaseCurrency   string      `json:"purchase_currency"`
	Locale             string      `json:"locale,omitempty"`
	OrderAmount        int64       `json:"order_amount"`
	OrderTaxAmount     int64       `json:"order_tax_amount"`
	OrderLines         []OrderLine `json:"order_lines"`
	MerchantReference1 string      `json:"merchant_reference1,omitempty"`
	MerchantReference2 string      `json:"merchant_reference2,omitempty"`
	MerchantData       string      `json:"merchant_data,omitempty"`
	AutoCapture        bool        `json:"auto_capture,omitempty"`
	ShippingAddress    *Address    `json:"shipping_address,omitempty"`
}

// CustomerToken is the answer to GET /customer-token/v1/tokens/{token}.
type CustomerToken struct {
	Status            string                  `json:"status"` // ACTIVE, CANCELLED, SUSPENDED
	PaymentMethodType string                  `json:"payment_method_type"`
	Card              *CardInformation        `json:"card,omitempty"`
	DirectDebit       *DirectDebitInformation `json:"direct_debit,omitempty"`
}

// CardInformation describes the card behind a customer token.
type CardInformation struct {
	Brand        string `json:"brand"`
	ExpiryDate   string `json:"expiry_date"`
	MaskedNumber string `json:"masked_number"`
}

// DirectDebitInformation describes the account behind a customer token.
type DirectDebitInformation struct {
	MaskedNumber string `json:"masked_number"`
}

// HPP place_order_mode values.
const (
	PlaceOrderModeNone    = "NONE"
	PlaceOrderModePlace   = "PLACE_ORDER"
	PlaceOrderModeCapture = "CAPTURE_ORDER"
)

// HPP session statuses (SessionResponseV1.status).
const (
	HPPWaiting       = "WAITING"
	HPPInProgress    = "IN_PROGRESS"
	HPPCompleted     = "COMPLETED"
	HPPFailed        = "FAILED"
	HPPCancelled     = "CANCELLED"
	HPPBack          = "BACK"
	HPPError         = "ERROR"
	HPPDisabled      = "DISABLED"
	HPPManualIDCheck = "MANUAL_ID_CHECK"
)

// HPPMerchantURLs are the templated URLs Klarna sends the shopper and callbacks to.
type HPPMerchantURLs struct {
	Success      string `json:"success,omitempty"`
	Cancel       string `json:"cancel,omitempty"`
	Back         string `json:"back,omitempty"`
	Failure      string `json:"failure,omitempty"`
	Error        string `json:"error,omitempty"`
	StatusUpdate string `json:"status_update,omitempty"`
}

// HPPOptions are the options of an HPP session.
type HPPOptions struct {
	PlaceOrderMode          string   `json:"place_order_mode,omitempty"`
	PaymentMethodCategory   string   `json:"payment_method_category,omitempty"`
	PaymentMethodCategories []string `json:"payment_method_categories,omitempty"`
	PurchaseType            string   `json:"purchase_type,omitempty"`
	ShowSubtotalDetail      string   `json:"show_subtotal_detail,omitempty"`
	LogoURL                 string   `json:"logo_url,omitempty"`
	PageTitle               string   `json:"page_title,omitempty"`
}

// HPPSessionRequest is the body of POST /hpp/v1/sessions (SessionCreationRequestV1).
type HPPSessionRequest struct {
	PaymentSessionURL string           `json:"payment_session_url"`
	ProfileID         string           `json:"profile_id,omitempty"`
	MerchantURLs      *HPPMerchantURLs `json:"merchant_urls,omitempty"`
	Options           *HPPOptions      `json:"options,omitempty"`
}

// DistributionModule is the distribution part of an HPP create answer.
type DistributionModule struct {
	Token         string `json:"token,omitempty"`
	StandaloneURL string `json:"standalone_url,omitempty"`
	GenerationURL string `json:"generation_url,omitempty"`
}

// HPPSession is the answer to POST /hpp/v1/sessions (SessionCreationResponseV1).
type HPPSession struct {
	SessionID                    string              `json:"session_id"`
	SessionURL                   string              `json:"session_url,omitempty"`
	RedirectURL                  string              `json:"redirect_url,omitempty"`
	QRCodeURL                    string              `json:"qr_code_url,omitempty"`
	DistributionURL              string              `json:"distribution_url,omitempty"`
	ManualIdentificationCheckURL string              `json:"manual_identification_check_url,omitempty"`
	ExpiresAt                    *time.Time          `json:"expires_at,omitempty"`
	DistributionModule           *DistributionModule `json:"distribution_module,omitempty"`
}

// HPPCustomer is the customer part of an HPP read answer.
type HPPCustomer struct {
	DateOfBirth                  string `json:"date_of_birth,omitempty"`
	FamilyName                   string `json:"family_name,omitempty"`
	GivenName                    string `json:"given_name,omitempty"`
	NationalIdentificationNumber string `json:"national_identification_number,omitempty"`
	Title                        string `json:"title,omitempty"`
}

// HPPSessionStatus is the answer to GET /hpp/v1/sessions/{id} (SessionResponseV1), and
// the "session" of a status_update callback.
type HPPSessionStatus struct {
	SessionID          string       `json:"session_id"`
	Status             string       `json:"status"`
	UpdatedAt          *time.Time   `json:"updated_at,omitempty"`
	ExpiresAt          *time.Time   `json:"expires_at,omitempty"`
	AuthorizationToken string       `json:"authorization_token,omitempty"`
	OrderID            string       `json:"order_id,omitempty"`
	KlarnaReference    string       `json:"klarna_reference,omitempty"`
	Customer           *HPPCustomer `json:"customer,omitempty"`
}

// StatusCallback is the body Klarna POSTs to merchant_urls.status_update.
type StatusCallback struct {
	EventID string           `json:"event_id"`
	Session HPPSessionStatus `json:"session"`
}

// DistributionRequest is the body of POST /hpp/v1/sessions/{id}/distribution.
type DistributionRequest struct {
	Method             string              `json:"method"` // sms, email, token
	ContactInformation DistributionContact `json:"contact_information"`
	Template           string              `json:"template,omitempty"`
}

// DistributionContact says where the HPP link goes.
type DistributionContact struct {
	Email        string `json:"email,omitempty"`
	Phone        string `json:"phone,omitempty"`
	PhoneCountry string `json:"phone_country,omitempty"`
	AccessID     string `json:"access_id,omitempty"`
}

// ErrorBody is Klarna's error body (ErrorV2).
type ErrorBody struct {
	ErrorCode     string   `json:"error_code,omitempty"`
	ErrorMessages []string `json:"error_messages,omitempty"`
	CorrelationID string   `json:"correlation_id,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	FraudStatus   string   `json:"fraud_status,omitempty"`
}

package klarnasim

import (
	"net/http"
	"strings"
	"testing"
)

// mutate returns kpBody() changed by f.
func mutate(f func(b map[string]any, l0 map[string]any)) map[string]any {
	b := kpBody()
	f(b, b["order_lines"].([]map[string]any)[0])
	return b
}

func TestKPSessionValidation(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"not json", "{", "request body"},
		{"not an object", "[1]", "request body"},
		{"purchase_country missing", mutate(func(b, _ map[string]any) { delete(b, "purchase_country") }), "purchase_country"},
		{"purchase_country not alpha-2", mutate(func(b, _ map[string]any) { b["purchase_country"] = "SWE" }), "purchase_country"},
		{"purchase_country no market", mutate(func(b, _ map[string]any) { b["purchase_country"] = "XX" }), "purchase_country"},
		{"purchase_currency missing", mutate(func(b, _ map[string]any) { delete(b, "purchase_currency") }), "purchase_currency"},
		{"purchase_currency pattern", mutate(func(b, _ map[string]any) { b["purchase_currency"] = "SEKK" }), "purchase_currency"},
		{"purchase_currency of another market", mutate(func(b, _ map[string]any) { b["purchase_currency"] = "EUR" }), "purchase_currency"},
		{"locale format", mutate(func(b, _ map[string]any) { b["locale"] = "sv_SE" }), "locale"},
		{"locale of another country", mutate(func(b, _ map[string]any) { b["locale"] = "de-DE" }), "locale"},
		{"intent enum", mutate(func(b, _ map[string]any) { b["intent"] = "buy_and_link" }), "intent"},
		{"acquiring_channel enum", mutate(func(b, _ map[string]any) { b["acquiring_channel"] = "WEB" }), "acquiring_channel"},
		{"order_amount missing", mutate(func(b, _ map[string]any) { delete(b, "order_amount") }), "order_amount"},
		{"order_amount negative", mutate(func(b, _ map[string]any) { b["order_amount"] = -1 }), "order_amount"},
		{"order_amount string", mutate(func(b, _ map[string]any) { b["order_amount"] = "22500" }), "order_amount"},
		{"order_amount fraction", mutate(func(b, _ map[string]any) { b["order_amount"] = 225.5 }), "order_amount"},
		{"order_amount beyond int64", `{"purchase_country":"SE","purchase_currency":"SEK","order_amount":1e30,"order_lines":[]}`, "order_amount"},
		{"order_amount not the sum", mutate(func(b, _ map[string]any) { b["order_amount"] = 22501 }), "order_amount"},
		{"order_tax_amount not the sum", mutate(func(b, _ map[string]any) { b["order_tax_amount"] = 4499 }), "order_tax_amount"},
		{"order_tax_amount negative", mutate(func(b, _ map[string]any) { b["order_tax_amount"] = -4500 }), "order_tax_amount"},
		{"order_lines missing", mutate(func(b, _ map[string]any) { delete(b, "order_lines") }), "order_lines"},
		{"order_lines empty", mutate(func(b, _ map[string]any) { b["order_lines"] = []any{} }), "order_lines"},
		{"order_lines over 1000", mutate(func(b, _ map[string]any) {
			lines := make([]map[string]any, 1001)
			for i := range lines {
				lines[i] = line("x", 1, 100)
			}
			b["order_lines"], b["order_amount"], b["order_tax_amount"] = lines, 100100, 20020
		}), "order_lines"},
		{"line not an object", mutate(func(b, _ map[string]any) { b["order_lines"] = []any{"shoe"} }), "order_lines[0]"},
		{"line name missing", mutate(func(_, l map[string]any) { delete(l, "name") }), "order_lines[0].name"},
		{"line name empty", mutate(func(_, l map[string]any) { l["name"] = "" }), "order_lines[0].name"},
		{"line name too long", mutate(func(_, l map[string]any) { l["name"] = strings.Repeat("é", 256) }), "order_lines[0].name"},
		{"line type enum", mutate(func(_, l map[string]any) { l["type"] = "service" }), "order_lines[0].type"},
		{"line quantity missing", mutate(func(_, l map[string]any) { delete(l, "quantity") }), "order_lines[0].quantity"},
		{"line quantity negative", mutate(func(_, l map[string]any) { l["quantity"] = -2 }), "order_lines[0].quantity"},
		{"line quantity_unit too long", mutate(func(_, l map[string]any) { l["quantity_unit"] = "kilograms" }), "order_lines[0].quantity_unit"},
		{"line unit_price missing", mutate(func(_, l map[string]any) { delete(l, "unit_price") }), "order_lines[0].unit_price"},
		{"line unit_price over the limit", mutate(func(_, l map[string]any) { l["unit_price"] = 100000001 }), "order_lines[0].unit_price"},
		{"line unit_price negative on physical", mutate(func(_, l map[string]any) { l["unit_price"] = -10000 }), "order_lines[0].unit_price"},
		{"line total_amount missing", mutate(func(_, l map[string]any) { delete(l, "total_amount") }), "order_lines[0].total_amount"},
		{"line total_amount arithmetic", mutate(func(b, l map[string]any) {
			l["total_amount"], l["total_tax_amount"] = 19000, 3800
			b["order_amount"], b["order_tax_amount"] = 21500, 4300
		}), "order_lines[0].total_amount"},
		{"line total_amount overflow", mutate(func(_, l map[string]any) {
			l["quantity"] = int64(9223372036854775807)
		}), "order_lines[0].total_amount"},
		{"line total_discount_amount negative", mutate(func(_, l map[string]any) { l["total_discount_amount"] = -1 }), "order_lines[0].total_discount_amount"},
		{"line tax_rate over 100%", mutate(func(_, l map[string]any) { l["tax_rate"] = 10001 }), "order_lines[0].tax_rate"},
		{"line total_tax_amount off by 2", mutate(func(b, l map[string]any) {
			l["total_tax_amount"] = 4002
			b["order_tax_amount"] = 4502
		}), "order_lines[0].total_tax_amount"},
		{"line reference too long", mutate(func(_, l map[string]any) { l["reference"] = strings.Repeat("r", 256) }), "order_lines[0].reference"},
		{"line merchant_data too long", mutate(func(_, l map[string]any) { l["merchant_data"] = strings.Repeat("m", 1025) }), "order_lines[0].merchant_data"},
		{"line product_url too long", mutate(func(_, l map[string]any) { l["product_url"] = strings.Repeat("u", 1025) }), "order_lines[0].product_url"},
		{"line product_identifiers.brand too long", mutate(func(_, l map[string]any) {
			l["product_identifiers"] = map[string]any{"brand": strings.Repeat("b", 71)}
		}), "order_lines[0].product_identifiers.brand"},
		{"line subscription interval", mutate(func(_, l map[string]any) {
			l["subscription"] = map[string]any{"name": "Monthly", "interval": "HOUR", "interval_count": 1}
		}), "order_lines[0].subscription.interval"},
		{"line subscription interval_count", mutate(func(_, l map[string]any) {
			l["subscription"] = map[string]any{"name": "Monthly", "interval": "MONTH", "interval_count": 0}
		}), "order_lines[0].subscription.interval_count"},
		{"merchant_reference1 too long", mutate(func(b, _ map[string]any) { b["merchant_reference1"] = strings.Repeat("r", 256) }), "merchant_reference1"},
		{"merchant_data too long", mutate(func(b, _ map[string]any) { b["merchant_data"] = strings.Repeat("d", 6001) }), "merchant_data"},
		{"merchant_urls.confirmation too long", mutate(func(b, _ map[string]any) {
			b["merchant_urls"] = map[string]any{"confirmation": strings.Repeat("u", 2001)}
		}), "merchant_urls.confirmation"},
		{"billing_address.postal_code too long", mutate(func(b, _ map[string]any) {
			b["billing_address"] = map[string]any{"postal_code": "12345678901"}
		}), "billing_address.postal_code"},
		{"shipping_address.country pattern", mutate(func(b, _ map[string]any) {
			b["shipping_address"] = map[string]any{"country": "Sweden"}
		}), "shipping_address.country"},
		{"customer.type pattern", mutate(func(b, _ map[string]any) { b["customer"] = map[string]any{"type": "robot"} }), "customer.type"},
		{"customer.customer_token not a string", mutate(func(b, _ map[string]any) { b["customer"] = map[string]any{"customer_token": 7} }), "customer.customer_token"},
		{"attachment without body", mutate(func(b, _ map[string]any) {
			b["attachment"] = map[string]any{"content_type": "application/vnd.klarna.internal.emd-v2+json"}
		}), "attachment.body"},
		{"options color", mutate(func(b, _ map[string]any) { b["options"] = map[string]any{"color_text": "red"} }), "options.color_text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectBadValue(t, e.do("POST", "/payments/v1/sessions", c.body), c.field)
		})
	}
	t.Run("content type", func(t *testing.T) {
		r := e.do("POST", "/payments/v1/sessions", kpBody(), "Content-Type", "text/plain")
		expectBadValue(t, r, "Content-Type")
	})
	if n := len(e.sim.Orders()) + len(e.sim.kp); n != 0 {
		t.Fatalf("invalid bodies created %d objects", n)
	}
}

func TestKPSessionValidAmounts(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		body map[string]any
	}{
		{"discount line", kpBody(line("Shoe", 1, 10000), map[string]any{
			"type": "discount", "name": "Promo", "quantity": 1, "unit_price": -1000,
			"tax_rate": 2500, "total_amount": -1000, "total_tax_amount": -200,
		})},
		{"line discount", kpBody(map[string]any{
			"name": "Shoe", "quantity": 2, "unit_price": 10000, "total_discount_amount": 5000,
			"tax_rate": 2500, "total_amount": 15000, "total_tax_amount": 3000,
		})},
		{"tax within one", kpBody(map[string]any{
			"name": "Odd", "quantity": 1, "unit_price": 999, "tax_rate": 2500,
			"total_amount": 999, "total_tax_amount": 199, // exact 199.8
		})},
		{"lowercase country and currency", func() map[string]any {
			b := kpBody()
			b["purchase_country"], b["purchase_currency"] = "se", "sek"
			return b
		}()},
		{"US sales tax line", map[string]any{
			"purchase_country": "US", "purchase_currency": "USD", "locale": "en-US",
			"order_amount": 10800, "order_tax_amount": 800,
			"order_lines": []map[string]any{
				{"type": "physical", "name": "Lamp", "quantity": 1, "unit_price": 10000, "tax_rate": 0, "total_amount": 10000, "total_tax_amount": 0},
				{"type": "sales_tax", "name": "Sales tax", "quantity": 1, "unit_price": 800, "tax_rate": 0, "total_amount": 800, "total_tax_amount": 0},
			},
		}},
		{"subscription", kpBody(map[string]any{
			"name": "Box", "quantity": 1, "unit_price": 5000, "tax_rate": 2500, "total_amount": 5000, "total_tax_amount": 1000,
			"subscription": map[string]any{"name": "Monthly box", "interval": "MONTH", "interval_count": 1},
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.createKP(c.body)
		})
	}
}

func TestTokenOrderValidation(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.sim.CreateToken(BehaviorOK, 0)
	path := "/customer-token/v1/tokens/" + tok + "/order"
	mut := func(f func(b map[string]any)) map[string]any {
		b := tokenOrderBody()
		f(b)
		return b
	}
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"purchase_currency missing", mut(func(b map[string]any) { delete(b, "purchase_currency") }), "purchase_currency"},
		{"purchase_currency unknown", mut(func(b map[string]any) { b["purchase_currency"] = "QQQ" }), "purchase_currency"},
		{"order_tax_amount missing", mut(func(b map[string]any) { delete(b, "order_tax_amount") }), "order_tax_amount"},
		{"order_amount zero", mut(func(b map[string]any) {
			b["order_amount"], b["order_tax_amount"] = 0, 0
			b["order_lines"] = []map[string]any{{"name": "Free", "quantity": 1, "unit_price": 0, "total_amount": 0}}
		}), "order_amount"},
		{"merchant_urls without confirmation", mut(func(b map[string]any) {
			b["merchant_urls"] = map[string]any{"push": "https://shop.example/push"}
		}), "merchant_urls.confirmation"},
		{"line merchant_data over 255", mut(func(b map[string]any) {
			b["order_lines"].([]map[string]any)[0]["merchant_data"] = strings.Repeat("m", 256)
		}), "order_lines[0].merchant_data"},
		{"shipping_address.phone too short", mut(func(b map[string]any) {
			b["shipping_address"] = map[string]any{"phone": "123"}
		}), "shipping_address.phone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectBadValue(t, e.do("POST", path, c.body), c.field)
		})
	}
	if n := len(e.sim.Orders()); n != 0 {
		t.Fatalf("%d orders from invalid bodies", n)
	}
	expectStatus(t, e.do("POST", path, tokenOrderBody()), http.StatusOK)
}

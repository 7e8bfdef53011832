// A minimal storefront on hppd, written from api/openapi.yaml alone: the
// client and the event types are generated from the document
// (openapi-typescript), the calls go through openapi-fetch, the JWT is minted
// with jose, and the event is verified with the standardwebhooks package.
//
// It starts an event receiver on 127.0.0.1 (a free port) and prints
// "events <url>" on stdout; then it reads one JSON line on stdin:
//
//	{"base": "http://127.0.0.1:8080", "storefront": "shop-a", "audience": "hppd",
//	 "hs256_key": "...", "webhook_secret": "whsec_..."}
//
// and, against that hppd, creates a session, repeats the creation with the
// same Idempotency-Key and the body serialised differently, reads the
// session, cancels it and waits for the session.cancelled event. It prints
// "ok" and exits 0, or prints what went wrong and exits 1.
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { randomUUID } from "node:crypto";

import createClient from "openapi-fetch";
import { SignJWT } from "jose";
import { Webhook } from "standardwebhooks";

import type { components, paths, webhooks } from "./hppd.js";

type Config = {
  base: string;
  storefront: string;
  audience: string;
  hs256_key: string;
  webhook_secret: string;
};
type SessionCreate = components["schemas"]["SessionCreate"];
type CancelledEvent = webhooks["session.cancelled"]["post"]["requestBody"]["content"]["application/json"];

function fail(msg: string): never {
  throw new Error(msg);
}

// mintToken signs a storefront JWT. The HS256 key is the literal bytes of
// HPPD_JWT_HS256_KEY (not base64-decoded); iat and exp are required, and
// exp - iat must stay within HPPD_JWT_MAX_LIFETIME (default 24 h).
async function mintToken(cfg: Config): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(cfg.storefront)
    .setAudience(cfg.audience)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(cfg.hs256_key));
}

// reorder returns v with the keys of every object in reverse order: the same
// JSON value, different bytes.
function reorder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reorder);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reorder(x)]));
  }
  return v;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) reject(new Error("event body over 1 MiB"));
      else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return typeof v === "string" ? v : "";
}

async function main(): Promise<void> {
  // Events arrive here; each is verified on its raw body before it is parsed.
  let secret = "";
  const seen = new Set<string>();
  const cancelled = new Map<string, CancelledEvent>();
  const receiver = createServer((req, res) => {
    void (async () => {
      const raw = await readBody(req);
      const headers = {
        "webhook-id": header(req, "webhook-id"),
        "webhook-timestamp": header(req, "webhook-timestamp"),
        "webhook-signature": header(req, "webhook-signature"),
      };
      let event: { type: string };
      try {
        event = new Webhook(secret).verify(raw, headers) as { type: string };
      } catch (err) {
        res.writeHead(400).end();
        console.error(`event refused: ${String(err)}`);
        return;
      }
      res.writeHead(204).end(); // acknowledge first, then act
      if (seen.has(headers["webhook-id"])) return; // delivered twice: once is enough
      seen.add(headers["webhook-id"]);
      if (event.type === "session.cancelled") {
        const ev = event as CancelledEvent;
        cancelled.set(ev.data.id, ev);
      }
    })().catch((err: unknown) => {
      console.error(`event receiver: ${String(err)}`);
      res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const port = (receiver.address() as AddressInfo).port;
  console.log(`events http://127.0.0.1:${port}/hppd-events`);

  const lines = createInterface({ input: process.stdin });
  const first: string = await new Promise((resolve) => lines.once("line", resolve));
  lines.close();
  const cfg = JSON.parse(first) as Config;
  secret = cfg.webhook_secret;

  const token = await mintToken(cfg);
  const hppd = createClient<paths>({ baseUrl: cfg.base, headers: { Authorization: `Bearer ${token}` } });

  const purchase: SessionCreate = {
    purchase_country: "SE",
    purchase_currency: "SEK",
    locale: "sv-SE",
    order_amount: 25000,
    order_tax_amount: 5000,
    order_lines: [
      { name: "Tea cup", quantity: 2, unit_price: 12500, tax_rate: 2500, total_amount: 25000, total_tax_amount: 5000 },
    ],
    merchant_reference1: "order-1001",
    return_urls: { success: "https://shop.example/thanks", failure: "https://shop.example/cart" },
  };

  // 1. Create the session.
  const key = randomUUID();
  const created = await hppd.POST("/v1/sessions", { params: { header: { "Idempotency-Key": key } }, body: purchase });
  if (created.response.status !== 201 || !created.data) {
    fail(`create: ${created.response.status} ${JSON.stringify(created.error)}`);
  }
  const session = created.data;
  if (!session.redirect_url) fail("create: no redirect_url for the shopper");

  // 2. Retry it as another process would: same key, same JSON value, other bytes.
  const replayed = await hppd.POST("/v1/sessions", {
    params: { header: { "Idempotency-Key": key } },
    body: purchase,
    bodySerializer: (b) => JSON.stringify(reorder(b), null, 2),
  });
  if (replayed.response.status !== 201 || replayed.data?.id !== session.id) {
    fail(`replay: ${replayed.response.status} ${JSON.stringify(replayed.error ?? replayed.data)}; want the same session ${session.id}`);
  }

  // 3. Read it.
  const read = await hppd.GET("/v1/sessions/{id}", { params: { path: { id: session.id } } });
  if (!read.data || read.data.status !== "pending") {
    fail(`read: ${read.response.status} ${JSON.stringify(read.error ?? read.data)}`);
  }

  // 4. Cancel it.
  const cancel = await hppd.POST("/v1/sessions/{id}/cancel", {
    params: { path: { id: session.id }, header: { "Idempotency-Key": randomUUID() } },
  });
  if (!cancel.data || cancel.data.status !== "cancelled") {
    fail(`cancel: ${cancel.response.status} ${JSON.stringify(cancel.error ?? cancel.data)}`);
  }

  // 5. The session.cancelled event arrives, signed.
  const deadline = Date.now() + 20_000;
  let ev = cancelled.get(session.id);
  while (!ev && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    ev = cancelled.get(session.id);
  }
  if (!ev) fail(`no session.cancelled event for ${session.id}`);
  if (ev.data.status !== "cancelled" || ev.data.sequence < 1) {
    fail(`event: ${JSON.stringify(ev)}`);
  }
  receiver.close();
  console.log(`ok session ${session.id} cancelled, event sequence ${ev.data.sequence}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);

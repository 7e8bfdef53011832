-- Schema 1 of hppd on PostgreSQL. Times are unix nanoseconds (bigint), exact
-- like Go's, so due-scans and fencing compare exactly what the caller passed;
-- ids compare bytewise (COLLATE "C") whatever the database's locale. A
-- record's body is the encoding/json of its core type; the columns beside it
-- are what scans, listings and fencing need, kept by the same statement.

CREATE TABLE hppd_meta (
	key   text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);

CREATE TABLE sessions (
	id             text COLLATE "C" PRIMARY KEY,
	storefront     text COLLATE "C" NOT NULL,
	status         text COLLATE "C" NOT NULL,
	hpp_session_id text COLLATE "C" UNIQUE,
	kp_session_id  text COLLATE "C" UNIQUE,
	check_at       bigint,          -- NULL: nothing to re-read
	authorized_at  bigint,          -- set only while authorized, order not placed
	created_at     bigint NOT NULL,
	updated_at     bigint NOT NULL,
	body           bytea NOT NULL
);
CREATE INDEX sessions_due ON sessions (check_at, id) WHERE check_at IS NOT NULL;
CREATE INDEX sessions_by_storefront ON sessions (storefront, created_at, id);
CREATE INDEX sessions_authorized ON sessions (authorized_at) WHERE authorized_at IS NOT NULL;
CREATE INDEX sessions_status ON sessions (status);

CREATE TABLE charges (
	id         text COLLATE "C" PRIMARY KEY,
	storefront text COLLATE "C" NOT NULL,
	status     text COLLATE "C" NOT NULL,
	created_at bigint NOT NULL,
	updated_at bigint NOT NULL,
	body       bytea NOT NULL
);
CREATE INDEX charges_by_storefront ON charges (storefront, created_at, id);
CREATE INDEX charges_status ON charges (status);

-- A job's lease lives in its columns, not in its body, so a claim is one
-- UPDATE; due is the lease's expiry while leased, else the job's DueAt.
CREATE TABLE jobs (
	id          text COLLATE "C" PRIMARY KEY,
	kind        text COLLATE "C" NOT NULL,
	due         bigint NOT NULL,
	session_id  text COLLATE "C" NOT NULL DEFAULT '',  -- what retention must keep
	charge_id   text COLLATE "C" NOT NULL DEFAULT '',
	lease_owner text COLLATE "C" NOT NULL DEFAULT '',
	lease_token bigint NOT NULL DEFAULT 0,
	lease_until bigint NOT NULL DEFAULT 0,
	body        bytea NOT NULL
);
CREATE INDEX jobs_due ON jobs (due, id);
CREATE INDEX jobs_kind ON jobs (kind);
CREATE INDEX jobs_session ON jobs (session_id) WHERE session_id <> '';
CREATE INDEX jobs_charge ON jobs (charge_id) WHERE charge_id <> '';

-- Names and keys that come from outside (or hold a NUL separator) are
-- bytea: text cannot hold a NUL byte, and they are compared, never sorted.
CREATE TABLE leases (
	name  bytea PRIMARY KEY,
	owner text COLLATE "C" NOT NULL,
	token bigint NOT NULL,
	until bigint NOT NULL
);

CREATE TABLE event_ids (
	hash      bytea PRIMARY KEY,
	marked_at bigint NOT NULL
);
CREATE INDEX event_ids_by_time ON event_ids (marked_at, hash);

CREATE TABLE idempotency (
	storefront text COLLATE "C" NOT NULL,
	key        bytea NOT NULL,
	created_at bigint NOT NULL,
	body       bytea NOT NULL,
	PRIMARY KEY (storefront, key)
);
CREATE INDEX idempotency_by_time ON idempotency (created_at);

CREATE TABLE tokens (
	storefront     text COLLATE "C" NOT NULL,
	customer_token bytea NOT NULL,
	body           bytea NOT NULL,
	PRIMARY KEY (storefront, customer_token)
);

CREATE TABLE token_owners (
	customer_token bytea PRIMARY KEY,
	storefront     text COLLATE "C" NOT NULL
);

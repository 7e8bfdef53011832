-- Replicas register here with a heartbeat so that each takes its share of
-- Klarna's rate limits (replicas.go).
CREATE TABLE replicas (
	id         text COLLATE "C" PRIMARY KEY,
	started_at bigint NOT NULL,
	seen_at    bigint NOT NULL
);

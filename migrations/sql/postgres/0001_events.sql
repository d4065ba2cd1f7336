-- The audit trail of every node: one chained table, and the chain's head
-- and anchor in a one-row table. Applied once, in one transaction, under
-- the schema lock; never changed after it shipped.

-- An event id is a u64 (microseconds << 12 | sequence). It is stored as
-- the BIGINT of the u64 with its top bit flipped (u64 0 is the smallest
-- BIGINT, -9223372036854775808): the same order, and room past 2041, when
-- event ids leave BIGINT's range.
CREATE TABLE events (
    id        BIGINT   PRIMARY KEY,
    -- '' for an event without a user (no user name is empty).
    user_name TEXT     NOT NULL,
    -- EventKind::code.
    kind      SMALLINT NOT NULL,
    -- The client address, for the address filter.
    ip        INET,
    -- The record as chained: EventRecord's bytes, the same on every backend.
    record    BYTEA    NOT NULL,
    -- The outbox entry that produced the event: a crash between the
    -- commit and the entry's acknowledgement never chains it twice.
    -- NULL for an event appended directly.
    source    TEXT     UNIQUE
);

-- One user's events, newest first.
CREATE INDEX events_by_user ON events (user_name, id DESC);
-- One kind's events, newest first.
CREATE INDEX events_by_kind ON events (kind, id DESC);

-- The chain: its newest event and hash (the head), and what the oldest
-- kept event links to (the anchor). Locked by every append.
CREATE TABLE chain (
    singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last_id         BIGINT  NOT NULL,
    head_hash       BYTEA   NOT NULL,
    appended        BIGINT  NOT NULL,
    anchor_hash     BYTEA   NOT NULL,
    pruned_through  BIGINT  NOT NULL,
    pruned          BIGINT  NOT NULL
);

INSERT INTO chain VALUES (
    TRUE,
    -9223372036854775808,
    '\x0000000000000000000000000000000000000000000000000000000000000000',
    0,
    '\x0000000000000000000000000000000000000000000000000000000000000000',
    -9223372036854775808,
    0
);

-- The support domain: tickets with their triage decision, SLA clocks and
-- due times, the conversation, the history of every change, and the
-- escalations the SLA check raised.
--
-- A ticket moves open -> pending -> resolved -> closed and can be reopened.
-- Its resolution clock pauses while it is pending or resolved; the spans
-- are kept in pauses (JSON [{"from", "to"}], "to" null while it lasts).

-- +goose Up
CREATE TABLE support_tickets (
    id                    TEXT        PRIMARY KEY,
    account_id            TEXT        NOT NULL REFERENCES accounts (id),
    subject               TEXT        NOT NULL,
    status                TEXT        NOT NULL,
    category              TEXT        NOT NULL,
    severity              TEXT        NOT NULL,
    queue                 TEXT        NOT NULL,
    -- The account as routing and the SLA saw it when the ticket opened.
    tier                  TEXT        NOT NULL DEFAULT '',
    sla_class             TEXT        NOT NULL,
    dfy                   BOOLEAN     NOT NULL DEFAULT FALSE,
    -- customer, agent (an operator opened it) or automatic (an event).
    origin                TEXT        NOT NULL,
    -- Automatic tickets: one ticket per (account, incident).
    incident_key          TEXT,
    -- The triage decision: category, severity, queue and fired rules.
    triage                JSONB       NOT NULL,
    opened_at             TIMESTAMPTZ NOT NULL,
    first_response_at     TIMESTAMPTZ,
    resolved_at           TIMESTAMPTZ,
    closed_at             TIMESTAMPTZ,
    pauses                JSONB       NOT NULL DEFAULT '[]',
    -- Due times as last computed; NULL while the clock is stopped or
    -- paused before its due time.
    first_response_due    TIMESTAMPTZ,
    resolution_due        TIMESTAMPTZ,
    -- States (ok, at_risk, breached, met) as of sla_checked_at.
    first_response_state  TEXT        NOT NULL DEFAULT 'ok',
    resolution_state      TEXT        NOT NULL DEFAULT 'ok',
    sla_checked_at        TIMESTAMPTZ NOT NULL,
    -- Set once a clock of the ticket breached.
    breached              BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    CONSTRAINT support_tickets_status_check CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    CONSTRAINT support_tickets_origin_check CHECK (origin IN ('customer', 'agent', 'automatic'))
);
CREATE UNIQUE INDEX support_tickets_incident_idx ON support_tickets (account_id, incident_key) WHERE incident_key IS NOT NULL;
CREATE INDEX support_tickets_opened_idx ON support_tickets (opened_at DESC, id DESC);
CREATE INDEX support_tickets_account_idx ON support_tickets (account_id, opened_at DESC, id DESC);
CREATE INDEX support_tickets_active_idx ON support_tickets (id) WHERE status IN ('open', 'pending');

CREATE TABLE support_messages (
    id         BIGSERIAL   PRIMARY KEY,
    ticket_id  TEXT        NOT NULL REFERENCES support_tickets (id),
    account_id TEXT        NOT NULL,
    -- customer, agent or system (automatic tickets).
    author     TEXT        NOT NULL,
    -- The API key that wrote it (not secret); '' for system messages.
    key_id     TEXT        NOT NULL DEFAULT '',
    body       TEXT        NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    CONSTRAINT support_messages_author_check CHECK (author IN ('customer', 'agent', 'system'))
);
CREATE INDEX support_messages_ticket_idx ON support_messages (ticket_id, id);

CREATE TABLE support_ticket_events (
    id         BIGSERIAL   PRIMARY KEY,
    ticket_id  TEXT        NOT NULL REFERENCES support_tickets (id),
    account_id TEXT        NOT NULL,
    -- opened, message_added, status_changed, reopened, escalated,
    -- sla_at_risk, incident_repeated.
    kind       TEXT        NOT NULL,
    -- Who or what acted: "key:<key id>", "sla_check", "event:<subject>".
    actor      TEXT        NOT NULL,
    detail     JSONB       NOT NULL DEFAULT '{}',
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX support_ticket_events_ticket_idx ON support_ticket_events (ticket_id, id);

CREATE TABLE support_escalations (
    id              BIGSERIAL   PRIMARY KEY,
    ticket_id       TEXT        NOT NULL REFERENCES support_tickets (id),
    account_id      TEXT        NOT NULL,
    -- "<clock>.<state>", e.g. first_response.breached: one escalation per
    -- key and ticket, so the same breach never escalates twice.
    key             TEXT        NOT NULL,
    clock           TEXT        NOT NULL,
    state           TEXT        NOT NULL,
    severity_before TEXT        NOT NULL,
    severity_after  TEXT        NOT NULL,
    queue_before    TEXT        NOT NULL,
    queue_after     TEXT        NOT NULL,
    due_at          TIMESTAMPTZ,
    at              TIMESTAMPTZ NOT NULL,
    CONSTRAINT support_escalations_key_unique UNIQUE (ticket_id, key)
);

-- +goose Down
DROP TABLE support_escalations;
DROP TABLE support_ticket_events;
DROP TABLE support_messages;
DROP TABLE support_tickets;

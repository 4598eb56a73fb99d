-- Billing state derived from Stripe: subscriptions, invoices, charges,
-- Done-For-You purchases and dunning. Every row derived from a Stripe object
-- records the event it came from (id and created time), so an older event
-- for the same object changes nothing: Stripe delivers out of order.

-- +goose Up
CREATE TABLE billing_subscriptions (
    id                   TEXT        PRIMARY KEY,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL,
    status               TEXT        NOT NULL,
    items                JSONB       NOT NULL DEFAULT '[]',
    unknown_prices       JSONB       NOT NULL DEFAULT '[]',
    current_period_end   TIMESTAMPTZ,
    cancel_at_period_end BOOLEAN     NOT NULL DEFAULT FALSE,
    trial_end            TIMESTAMPTZ,
    source_event_id      TEXT        NOT NULL,
    source_event_created TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX billing_subscriptions_account_idx ON billing_subscriptions (account_id);
CREATE INDEX billing_subscriptions_customer_idx ON billing_subscriptions (customer_id);

CREATE TABLE billing_invoices (
    id                   TEXT        PRIMARY KEY,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL,
    subscription_id      TEXT        NOT NULL DEFAULT '',
    status               TEXT        NOT NULL,
    currency             TEXT        NOT NULL DEFAULT '',
    amount_due           BIGINT      NOT NULL DEFAULT 0,
    amount_paid          BIGINT      NOT NULL DEFAULT 0,
    attempt_count        BIGINT      NOT NULL DEFAULT 0,
    next_payment_attempt TIMESTAMPTZ,
    hosted_invoice_url   TEXT        NOT NULL DEFAULT '',
    created              TIMESTAMPTZ NOT NULL,
    source_event_id      TEXT        NOT NULL,
    source_event_created TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX billing_invoices_account_idx ON billing_invoices (account_id, created DESC);

CREATE TABLE billing_charges (
    id                   TEXT        PRIMARY KEY,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL DEFAULT '',
    invoice_id           TEXT        NOT NULL DEFAULT '',
    amount               BIGINT      NOT NULL DEFAULT 0,
    amount_refunded      BIGINT      NOT NULL DEFAULT 0,
    dispute_id           TEXT        NOT NULL DEFAULT '',
    dispute_status       TEXT        NOT NULL DEFAULT '',
    source_event_id      TEXT        NOT NULL,
    source_event_created TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE billing_dfy_purchases (
    checkout_session_id TEXT        PRIMARY KEY,
    account_id          TEXT        NOT NULL,
    package             TEXT        NOT NULL,
    quantity            BIGINT      NOT NULL,
    purchased_at        TIMESTAMPTZ NOT NULL,
    source_event_id     TEXT        NOT NULL
);
CREATE INDEX billing_dfy_account_idx ON billing_dfy_purchases (account_id);

-- One row per account that is or was behind on payment.
CREATE TABLE billing_dunning (
    account_id        TEXT        PRIMARY KEY,
    state             TEXT        NOT NULL,
    invoice_id        TEXT        NOT NULL,
    past_due_since    TIMESTAMPTZ NOT NULL,
    grace_until       TIMESTAMPTZ NOT NULL,
    suspended_at      TIMESTAMPTZ,
    event_created     TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT billing_dunning_state_check CHECK (state IN ('past_due', 'suspended', 'settled'))
);
CREATE INDEX billing_dunning_due_idx ON billing_dunning (state, grace_until);

-- +goose Down
DROP TABLE billing_dunning;
DROP TABLE billing_dfy_purchases;
DROP TABLE billing_charges;
DROP TABLE billing_invoices;
DROP TABLE billing_subscriptions;

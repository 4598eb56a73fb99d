-- JSON columns are TEXT; time columns DATETIME (see 00001_pipeline.sql).
-- Billing state derived from Stripe: subscriptions, invoices, charges,
-- Done-For-You purchases and dunning. Every row derived from a Stripe object
-- records the event it came from (id and created time), so an older event
-- for the same object changes nothing: Stripe delivers out of order.

-- +goose Up
CREATE TABLE billing_subscriptions (
    id                   TEXT        PRIMARY KEY NOT NULL,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL,
    status               TEXT        NOT NULL,
    items                TEXT       NOT NULL DEFAULT '[]',
    unknown_prices       TEXT       NOT NULL DEFAULT '[]',
    current_period_end   DATETIME,
    cancel_at_period_end BOOLEAN     NOT NULL DEFAULT 0,
    trial_end            DATETIME,
    source_event_id      TEXT        NOT NULL,
    source_event_created DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL
);
CREATE INDEX billing_subscriptions_account_idx ON billing_subscriptions (account_id);
CREATE INDEX billing_subscriptions_customer_idx ON billing_subscriptions (customer_id);

CREATE TABLE billing_invoices (
    id                   TEXT        PRIMARY KEY NOT NULL,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL,
    subscription_id      TEXT        NOT NULL DEFAULT '',
    status               TEXT        NOT NULL,
    currency             TEXT        NOT NULL DEFAULT '',
    amount_due           INTEGER      NOT NULL DEFAULT 0,
    amount_paid          INTEGER      NOT NULL DEFAULT 0,
    attempt_count        INTEGER      NOT NULL DEFAULT 0,
    next_payment_attempt DATETIME,
    hosted_invoice_url   TEXT        NOT NULL DEFAULT '',
    created              DATETIME NOT NULL,
    source_event_id      TEXT        NOT NULL,
    source_event_created DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL
);
CREATE INDEX billing_invoices_account_idx ON billing_invoices (account_id, created DESC);

CREATE TABLE billing_charges (
    id                   TEXT        PRIMARY KEY NOT NULL,
    account_id           TEXT,
    customer_id          TEXT        NOT NULL DEFAULT '',
    invoice_id           TEXT        NOT NULL DEFAULT '',
    amount               INTEGER      NOT NULL DEFAULT 0,
    amount_refunded      INTEGER      NOT NULL DEFAULT 0,
    dispute_id           TEXT        NOT NULL DEFAULT '',
    dispute_status       TEXT        NOT NULL DEFAULT '',
    source_event_id      TEXT        NOT NULL,
    source_event_created DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL
);

CREATE TABLE billing_dfy_purchases (
    checkout_session_id TEXT        PRIMARY KEY NOT NULL,
    account_id          TEXT        NOT NULL,
    package             TEXT        NOT NULL,
    quantity            INTEGER      NOT NULL,
    purchased_at        DATETIME NOT NULL,
    source_event_id     TEXT        NOT NULL
);
CREATE INDEX billing_dfy_account_idx ON billing_dfy_purchases (account_id);

-- One row per account that is or was behind on payment.
CREATE TABLE billing_dunning (
    account_id        TEXT        PRIMARY KEY NOT NULL,
    state             TEXT        NOT NULL,
    invoice_id        TEXT        NOT NULL,
    past_due_since    DATETIME NOT NULL,
    grace_until       DATETIME NOT NULL,
    suspended_at      DATETIME,
    event_created     DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    CONSTRAINT billing_dunning_state_check CHECK (state IN ('past_due', 'suspended', 'settled'))
);
CREATE INDEX billing_dunning_due_idx ON billing_dunning (state, grace_until);

-- +goose Down
DROP TABLE billing_dunning;
DROP TABLE billing_dfy_purchases;
DROP TABLE billing_charges;
DROP TABLE billing_invoices;
DROP TABLE billing_subscriptions;

"""The database schema, versioned with `PRAGMA user_version`.

A migration is appended, never edited: version N's script turns a version
N-1 database into version N. `application_id` marks the file as synctui's.
Decimals are stored as TEXT, exactly as written.
"""

from __future__ import annotations

APPLICATION_ID = 0x53594E43  # "SYNC"

MIGRATIONS: tuple[str, ...] = (
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE instruments (
        symbol TEXT PRIMARY KEY, family TEXT NOT NULL, kind TEXT NOT NULL,
        multiplier TEXT NOT NULL, tick TEXT NOT NULL, qty_step TEXT NOT NULL,
        min_qty TEXT NOT NULL, margin_per_contract TEXT NOT NULL,
        max_leverage INTEGER NOT NULL, mmr TEXT NOT NULL, name TEXT NOT NULL);
    CREATE TABLE prices (family TEXT PRIMARY KEY, symbol TEXT NOT NULL, price TEXT NOT NULL);
    CREATE TABLE brokers (
        name TEXT PRIMARY KEY, fee_per_contract TEXT NOT NULL, slippage_ticks TEXT NOT NULL,
        naming TEXT NOT NULL, next_order INTEGER NOT NULL, next_fill INTEGER NOT NULL);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY, broker TEXT NOT NULL, seq INTEGER NOT NULL,
        balance TEXT NOT NULL, realized TEXT NOT NULL, fees TEXT NOT NULL,
        daily_loss_limit TEXT, max_drawdown TEXT, day_start TEXT NOT NULL,
        peak TEXT NOT NULL, breached TEXT);
    CREATE TABLE account_settings (
        account TEXT NOT NULL, symbol TEXT NOT NULL, leverage INTEGER NOT NULL,
        margin_mode TEXT NOT NULL, PRIMARY KEY (account, symbol)) WITHOUT ROWID;
    CREATE TABLE positions (
        account TEXT NOT NULL, symbol TEXT NOT NULL, qty TEXT NOT NULL,
        avg_price TEXT NOT NULL, margin TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (account, symbol)) WITHOUT ROWID;
    CREATE TABLE orders (
        id TEXT PRIMARY KEY, broker TEXT NOT NULL, account TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL, qty TEXT NOT NULL,
        price TEXT, reduce_only INTEGER NOT NULL, stop_loss TEXT, take_profit TEXT,
        client_id TEXT UNIQUE, parent_id TEXT, role TEXT, oco_id TEXT,
        status TEXT NOT NULL);
    CREATE INDEX orders_working ON orders (status) WHERE status = 'working';
    CREATE TABLE fills (
        id TEXT PRIMARY KEY, broker TEXT NOT NULL, account TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, qty TEXT NOT NULL, price TEXT NOT NULL,
        fee TEXT NOT NULL, realized TEXT NOT NULL, cause TEXT NOT NULL, order_id TEXT,
        client_id TEXT, position_before TEXT NOT NULL, position_after TEXT NOT NULL,
        at TEXT NOT NULL);
    CREATE INDEX fills_account ON fills (account);
    CREATE TABLE groups (
        name TEXT PRIMARY KEY, seq INTEGER NOT NULL, leader TEXT, status TEXT NOT NULL,
        reason TEXT);
    CREATE TABLE group_followers (
        grp TEXT NOT NULL, account TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (grp, account)) WITHOUT ROWID;
    CREATE TABLE follower_settings (
        grp TEXT NOT NULL, follower TEXT NOT NULL, symbol TEXT NOT NULL,
        ratio INTEGER NOT NULL, sync INTEGER NOT NULL, cross TEXT,
        PRIMARY KEY (grp, follower, symbol)) WITHOUT ROWID;
    CREATE TABLE mirrors (leader_order TEXT NOT NULL, follower TEXT NOT NULL, order_id TEXT);
    CREATE INDEX mirrors_leader ON mirrors (leader_order);
    CREATE TABLE bracketed (
        leader_order TEXT NOT NULL, follower TEXT NOT NULL, order_id TEXT NOT NULL);
    CREATE INDEX bracketed_leader ON bracketed (leader_order);
    CREATE TABLE copy_orders (order_id TEXT PRIMARY KEY, grp TEXT NOT NULL);
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY, grp TEXT NOT NULL, account TEXT NOT NULL,
        symbol TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL);
    CREATE TABLE intents (
        key TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL,
        status TEXT NOT NULL, order_id TEXT);
    CREATE INDEX intents_pending ON intents (seq) WHERE status = 'pending';
    CREATE TABLE pending_events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE event_log (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL);
    """,
    # version 2: Smart Sync copies (their sub-accounts live in `accounts`)
    """
    CREATE TABLE copies (
        grp TEXT NOT NULL, account TEXT NOT NULL, sub TEXT NOT NULL UNIQUE,
        investment TEXT NOT NULL, copy_open_positions INTEGER NOT NULL, stop_loss TEXT,
        on_stop TEXT NOT NULL, status TEXT NOT NULL, funds_returned INTEGER NOT NULL,
        pending_leverage TEXT NOT NULL, PRIMARY KEY (grp, account));
    INSERT INTO meta VALUES ('next_copy', '1');
    """,
    # version 3: the markets a broker trades (SPEC 9); a bracketed copy that failed
    # (no order id) is remembered, so its entry's exits are not copied either (SPEC 8);
    # why the broker rejected an order, so that a restart that finds an intent still
    # pending reports its copy's failure with the broker's own reason; a broker's
    # faults, its connection and what it holds back while disconnected, what waits for
    # it, and a group's signal expiry (SPEC 9)
    """
    ALTER TABLE brokers ADD COLUMN markets TEXT NOT NULL DEFAULT 'futures,perps';
    CREATE TABLE bracketed_v3 (
        leader_order TEXT NOT NULL, follower TEXT NOT NULL, order_id TEXT);
    INSERT INTO bracketed_v3 SELECT leader_order, follower, order_id FROM bracketed;
    DROP TABLE bracketed;
    ALTER TABLE bracketed_v3 RENAME TO bracketed;
    CREATE INDEX bracketed_leader ON bracketed (leader_order);
    ALTER TABLE orders ADD COLUMN reject_reason TEXT;
    ALTER TABLE orders ADD COLUMN reject_message TEXT;
    ALTER TABLE brokers ADD COLUMN faults TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE brokers ADD COLUMN fault_draws INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE brokers ADD COLUMN connected INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE brokers ADD COLUMN ack_delay TEXT NOT NULL DEFAULT '0';
    ALTER TABLE groups ADD COLUMN signal_expiry TEXT;
    CREATE TABLE held_events (seq INTEGER PRIMARY KEY, broker TEXT NOT NULL, body TEXT NOT NULL);
    CREATE TABLE waiting (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL);
    """,
    # version 4: start-up reads the open intents (pending or submitted) through an
    # index, not by scanning a history of a million
    """
    DROP INDEX intents_pending;
    CREATE INDEX intents_open ON intents (seq) WHERE status IN ('pending', 'submitted');
    """,
    # version 5: when an order was placed, for the history blotter (fills have their
    # time already); orders written before it have none
    """
    ALTER TABLE orders ADD COLUMN at TEXT;
    """,
    # version 6: an intent carries its group. An accepted intent (`order_id` set) is
    # then its order's copy link (orders.client_id = intents.key), so a fan-out no
    # longer writes a `copy_orders` row per follower order; the links written before
    # stay in `copy_orders`, which is still read. Of the intents written before, the
    # open ones (few, found by `intents_open`) get their group from their body (the
    # object of the first versions, or the array `[2, group, ...]` of later ones):
    # they may still be accepted, and their link is made then; the done ones keep none
    """
    ALTER TABLE intents ADD COLUMN grp TEXT;
    UPDATE intents SET grp = CASE json_type(body) WHEN 'array' THEN json_extract(body, '$[1]')
        ELSE json_extract(body, '$.group') END
        WHERE status IN ('pending', 'submitted');
    """,
    # version 7: no index of fills by account. A fan-out added a fill of every follower
    # to it, each on its own account's page: a thousand scattered page writes per
    # commit, more as the index grew (1,000 fills took 5 ms to insert at first and
    # 31 ms after 400,000 fills; without it, 2.7 ms throughout). The history's account
    # filter reads the fills newest first instead, as it reads the orders.
    """
    DROP INDEX IF EXISTS fills_account;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

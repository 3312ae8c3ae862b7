-- Refusals of requests without a known user (every 401; 403s such as cross_origin, csrf or
-- cookies_blocked before anyone signed in) are counted, not recorded one row each: one row
-- per anonymous 401 cost 277 bytes, so a bot hammering a protected page grew the audit
-- trail by tens of millions of rows a day. Counts are exact; events about known users
-- (sign-ins, sign-outs, 403s of signed-in users, administrative changes) stay in
-- audit_events, one row each.
--
-- Three grains. Per minute and per hour by status, reason and path: the dashboard's
-- totals, chart, reasons and paths, a few dozen rows a minute however many clients there
-- are (rows are per key, not per instance). Long windows read the hours, and the minutes
-- only for the window's first, partial hour (`audit_denials_since`); minute counts are
-- kept for eight days. Per hour with the client's network as well (/24 for IPv4, /64 for
-- IPv6): a flood from thousands of networks adds rows per hour, not per minute. Each
-- instance tracks at most a fixed number of networks an hour (see `audit::tally`);
-- beyond it, the network is 'other'.

CREATE TABLE audit_denials_by_minute (
    minute  timestamptz NOT NULL,
    status  smallint NOT NULL,
    reason  text NOT NULL,
    -- The route template ('/admin/users/{id}'), or the clipped path of an unrouted request
    -- ('other' past an instance's per-minute cap of distinct paths).
    path    text NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (minute, status, reason, path)
);

CREATE TABLE audit_denials_by_hour (
    hour    timestamptz NOT NULL,
    status  smallint NOT NULL,
    reason  text NOT NULL,
    path    text NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (hour, status, reason, path)
);

CREATE TABLE audit_denials_by_network (
    hour    timestamptz NOT NULL,
    status  smallint NOT NULL,
    reason  text NOT NULL,
    path    text NOT NULL,
    -- '203.0.113.0/24', '2001:db8:1:2::/64', or 'other'.
    network text NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (hour, status, reason, path, network)
);

-- The counted refusals since `start`, exact to the minute: whole hours from the hourly
-- table, the rest of start's hour from the minute table. (Hours and minutes are UTC, as the
-- app writes them.) Inlined by the planner, so `start` reaches both index scans.
CREATE FUNCTION audit_denials_since(start timestamptz)
RETURNS TABLE (at timestamptz, status smallint, reason text, path text, count bigint)
LANGUAGE sql STABLE AS $$
    SELECT hour, status, reason, path, count FROM audit_denials_by_hour
    WHERE hour >= date_trunc('hour', start, 'UTC') + interval '1 hour'
    UNION ALL
    SELECT minute, status, reason, path, count FROM audit_denials_by_minute
    WHERE minute >= date_trunc('minute', start, 'UTC')
      AND minute < date_trunc('hour', start, 'UTC') + interval '1 hour'
$$;

-- The dashboard's questions about recorded refusals and failed sign-ins (the events with
-- a status) answered from this index alone, without visiting the table's other events.
CREATE INDEX audit_events_refusals_idx ON audit_events (at)
    INCLUDE (event, status, reason, username, path, ip) WHERE status IS NOT NULL;
-- Index-only scans need the visibility map: vacuum this append-only table after 1 % new
-- rows rather than the default 20 % (which, at millions of rows, left the last day's
-- pages unvacuumed: exactly the ones the dashboard reads).
ALTER TABLE audit_events SET (autovacuum_vacuum_insert_scale_factor = 0.01);

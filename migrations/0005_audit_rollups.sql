-- Refusals of requests without a known user (every 401; 403s such as cross_origin, csrf or
-- cookies_blocked before anyone signed in) are counted, not recorded one row each: one row
-- per anonymous 401 cost 277 bytes, so a bot hammering a protected page grew the audit
-- trail by tens of millions of rows a day. Counts are exact; events about known users
-- (sign-ins, sign-outs, 403s of signed-in users, administrative changes) stay in
-- audit_events, one row each.
--
-- Two grains. Per minute by status, reason and path: the dashboard's totals, chart,
-- reasons and paths, a few dozen rows a minute however many clients there are. Per hour
-- with the client's network as well (/24 for IPv4, /64 for IPv6): a flood from thousands
-- of networks adds rows per hour, not per minute. Each instance tracks at most a fixed
-- number of networks an hour (see `audit::tally`); beyond it, the network is 'other'.

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

-- The dashboard's "latest refusals of signed-in people" reads the newest 401/403 events.
CREATE INDEX audit_events_denials_at_idx ON audit_events (at DESC) WHERE status IN (401, 403);

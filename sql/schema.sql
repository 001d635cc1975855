-- The data model (docs/spec.md §1). Every table carries workspace_id and every primary
-- and foreign key includes it, so the schema can be distributed by tenant.

CREATE SEQUENCE audience_internal.workspace_id_seq;
CREATE SEQUENCE audience_internal.app_id_seq;
CREATE SEQUENCE audience_internal.member_id_seq;
CREATE SEQUENCE audience_internal.viewer_id_seq;
CREATE SEQUENCE audience_internal.event_id_seq;

CREATE TABLE audience_internal.workspaces (
    workspace_id bigint PRIMARY KEY DEFAULT nextval('audience_internal.workspace_id_seq'),
    slug text NOT NULL UNIQUE,
    name text NOT NULL,
    -- Months are calendar months in this zone.
    time_zone text NOT NULL DEFAULT 'UTC',
    -- Views before this time are shown under pseudonyms, whoever made them.
    identification_start timestamptz NOT NULL DEFAULT '-infinity',
    -- All-time totals count views from this time on.
    counting_start timestamptz NOT NULL DEFAULT '-infinity',
    -- 'monthly': a pseudonym changes every calendar month, so a visitor
    -- cannot be followed from month to month.
    pseudonym_rotation text NOT NULL DEFAULT 'none' CHECK (pseudonym_rotation IN ('none', 'monthly')),
    -- 'requester': each requester sees their own pseudonyms, so two members
    -- cannot compare notes about one visitor.
    pseudonym_scope text NOT NULL DEFAULT 'workspace' CHECK (pseudonym_scope IN ('workspace', 'requester')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audience_internal.workspaces IS 'Tenants: teams or accounts that own apps.';

-- The secrets of a workspace, apart from everything else so that no query on
-- the data ever needs to touch them (see src/privacy/keys.rs).
CREATE TABLE audience_internal.workspace_keys (
    workspace_id bigint PRIMARY KEY REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    identity_key bytea NOT NULL CHECK (length(identity_key) = 32),
    pseudonym_key bytea NOT NULL CHECK (length(pseudonym_key) = 32),
    pseudonym_key_version integer NOT NULL DEFAULT 1,
    pseudonym_key_rotated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audience_internal.workspace_keys IS
    'Per-workspace secrets from the OS random source: identity_key hashes who viewed, pseudonym_key labels them.';

-- The HS256 secret request tokens are checked against. One for the platform,
-- not per tenant, so the only table without workspace_id (a Citus reference
-- table if distributed).
CREATE TABLE audience_internal.token_secrets (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret bytea NOT NULL CHECK (length(secret) >= 32),
    set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audience_internal.token_secrets IS 'The secret audience.authenticate checks request tokens against.';

-- Request tokens already used, by a digest of their id (claim jti), until
-- they expire: a token is good for one transaction, so that one seen by
-- someone else (in pg_stat_activity, a log, a proxy) is worth nothing.
CREATE TABLE audience_internal.spent_tokens (
    token_id bytea PRIMARY KEY CHECK (length(token_id) = 32),
    expires_at timestamptz NOT NULL
);
CREATE INDEX spent_tokens_expiry ON audience_internal.spent_tokens (expires_at);
COMMENT ON TABLE audience_internal.spent_tokens IS 'Ids of request tokens already used, kept until the tokens expire.';

CREATE TABLE audience_internal.apps (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    app_id bigint NOT NULL DEFAULT nextval('audience_internal.app_id_seq'),
    slug text NOT NULL,
    name text NOT NULL,
    visibility text NOT NULL CHECK (visibility IN ('public', 'private')),
    -- When the current visibility took effect; earlier views look it up in
    -- app_visibility_changes.
    visibility_since timestamptz NOT NULL DEFAULT '-infinity',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, app_id),
    UNIQUE (workspace_id, slug)
);
COMMENT ON TABLE audience_internal.apps IS 'What viewers open. Visibility public or private, which can change.';

CREATE TABLE audience_internal.app_visibility_changes (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    visibility text NOT NULL CHECK (visibility IN ('public', 'private')),
    PRIMARY KEY (workspace_id, app_id, changed_at),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.app_visibility_changes IS
    'Visibility history of each app; the first row of an app is at -infinity.';

CREATE TABLE audience_internal.members (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    member_id bigint NOT NULL DEFAULT nextval('audience_internal.member_id_seq'),
    identity text NOT NULL,
    -- The member's identity under the workspace's identity key: it matches the
    -- viewer_hash of their views, so membership is judged when asked.
    identity_hash bytea NOT NULL,
    kind text NOT NULL CHECK (kind IN ('admin', 'developer', 'viewer')),
    status text NOT NULL CHECK (status IN ('active', 'invited')),
    -- The database role that stands for the member, by OID (see check_role).
    db_role regrole,
    invited_at timestamptz,
    joined_at timestamptz,
    PRIMARY KEY (workspace_id, member_id),
    UNIQUE (workspace_id, identity),
    UNIQUE (workspace_id, identity_hash),
    CHECK (status = 'active' OR kind = 'viewer')
);
-- Requester resolution looks members up by token subject and by role.
CREATE INDEX members_identity ON audience_internal.members (identity);
CREATE INDEX members_db_role ON audience_internal.members (db_role) WHERE db_role IS NOT NULL;
COMMENT ON TABLE audience_internal.members IS
    'People in a workspace: admin, developer or viewer; invited viewers are status invited until they accept.';

CREATE TABLE audience_internal.app_access (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    identity text NOT NULL,
    identity_hash bytea NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, app_id, identity_hash),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.app_access IS
    'Who may open a private app: members, or people granted that app alone.';

-- Whoever opened an app, by keyed hash. The plaintext identity is kept only
-- for a viewer seen on an app while it was private (their name may be shown
-- to the workspace); an outsider or anonymous visitor is only ever a hash.
CREATE TABLE audience_internal.viewers (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    viewer_id bigint NOT NULL DEFAULT nextval('audience_internal.viewer_id_seq'),
    viewer_hash bytea NOT NULL,
    anonymous boolean NOT NULL,
    identity text,
    PRIMARY KEY (workspace_id, viewer_id),
    UNIQUE (workspace_id, viewer_hash),
    CHECK (identity IS NULL OR NOT anonymous)
);
COMMENT ON TABLE audience_internal.viewers IS
    'Viewers of a workspace by keyed hash; identity only for authenticated views of private apps.';

-- The raw events, a partition per calendar month in UTC
-- (sql/event_store.sql adds them as events arrive and drops them when a
-- month is retired), so that old months go as whole tables and a read of
-- recent days touches recent partitions only. No foreign key: adding a
-- partition would otherwise lock the apps and viewers tables against every
-- writer, and each event would pay two key lookups and a row lock. The
-- writers keep the references instead: an event is stored under its
-- workspace's lock (sql/ingest.sql), which delete_workspace and
-- forget_viewer, the only deleters of apps and viewers, wait for, and they
-- delete the events themselves. Each partition has its own keys and indexes
-- (add_event_month), the table none: pg_dump copies a partition with its
-- indexes, and restoring them into a table that made its own on ATTACH
-- would fail.
CREATE TABLE audience_internal.view_events (
    workspace_id bigint NOT NULL,
    event_id bigint NOT NULL DEFAULT nextval('audience_internal.event_id_seq'),
    app_id bigint NOT NULL,
    viewer_id bigint NOT NULL,
    viewed_at timestamptz NOT NULL,
    ended_at timestamptz,
    kind text NOT NULL CHECK (kind IN ('session', 'visit')),
    -- An authenticated view of the app while it was private: its viewer may
    -- be shown by identity.
    identifiable boolean NOT NULL,
    -- The database login that recorded the event (audience_internal.session_login,
    -- by OID), to which alone end_session answers about it: no other login
    -- learns when it was viewed, or that it exists. NULL for events stored
    -- before 0.2.0, which only the operator can end.
    recorded_by oid DEFAULT audience_internal.session_login(),
    CHECK (ended_at IS NULL OR ended_at >= viewed_at)
) PARTITION BY RANGE (viewed_at);
COMMENT ON TABLE audience_internal.view_events IS
    'One opening of one app by one viewer: the raw events, a partition per calendar month (UTC).';

-- Events stored but not yet folded into the rollups (sql/rollups.sql): a copy
-- of what the fold needs, kept until a fold moves them into the rollups in
-- one transaction. A single event (record_view) writes only this one row
-- beside the event, and no rollup row, so that concurrent writers of a
-- workspace do not queue on its counters (the bulk paths fold their own
-- events in the statement that stores them); every read adds what is here to what the rollups hold, so that
-- answers stay exact at the snapshot of the read (a fold's commit takes rows
-- out of here and puts them into the rollups at once). end_session keeps
-- ended_at equal to the event's.
CREATE TABLE audience_internal.pending_folds (
    workspace_id bigint NOT NULL,
    event_id bigint NOT NULL,
    app_id bigint NOT NULL,
    viewer_id bigint NOT NULL,
    viewed_at timestamptz NOT NULL,
    ended_at timestamptz,
    kind text NOT NULL,
    identifiable boolean NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
COMMENT ON TABLE audience_internal.pending_folds IS
    'Events stored but not yet folded into the rollups; reads add them to what the rollups hold.';

-- Rollups, kept current by the fold (sql/rollups.sql) so that no answer scans
-- raw events.

CREATE TABLE audience_internal.app_viewers (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    viewer_id bigint NOT NULL,
    first_viewed_at timestamptz NOT NULL,
    last_viewed_at timestamptz NOT NULL,
    -- Whether the view at last_viewed_at was identifiable (see view_events).
    last_view_identifiable boolean NOT NULL,
    views bigint NOT NULL,
    -- Views at or after the workspace's counting start; the viewer counts in
    -- the app's all-time total when this is above zero.
    counted_views bigint NOT NULL,
    PRIMARY KEY (workspace_id, app_id, viewer_id),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, viewer_id) REFERENCES audience_internal.viewers ON DELETE CASCADE
);
CREATE INDEX app_viewers_recent
    ON audience_internal.app_viewers (workspace_id, app_id, last_viewed_at DESC, viewer_id DESC);
COMMENT ON TABLE audience_internal.app_viewers IS 'Rollup: each viewer of each app, with last view and view count.';

CREATE TABLE audience_internal.app_totals (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    viewers bigint NOT NULL,
    views bigint NOT NULL,
    PRIMARY KEY (workspace_id, app_id),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.app_totals IS 'Rollup: all-time distinct viewers and views per app since the counting start.';

CREATE TABLE audience_internal.app_months (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    month date NOT NULL,
    unique_viewers bigint NOT NULL,
    views bigint NOT NULL,
    -- The month's viewers as a set (audience_internal.viewer_set): the
    -- distinct viewers of several apps are the union of their sets, and
    -- unique_viewers is its size (a fold merges its viewers into it, not a
    -- row per viewer).
    viewers bytea NOT NULL,
    PRIMARY KEY (workspace_id, app_id, month),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.app_months IS 'Rollup: unique viewers, views and the set of viewers per app per month.';

CREATE TABLE audience_internal.workspace_months (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    month date NOT NULL,
    unique_viewers bigint NOT NULL,
    views bigint NOT NULL,
    -- The views and the set of viewers of the apps that are public now: a
    -- viewer member sees every public app and the private ones granted to
    -- it, so its monthly uniques are this set united with its few private
    -- apps' sets (app_months), not a union of every public app's.
    -- set_app_visibility makes them again.
    public_viewers bytea NOT NULL,
    public_views bigint NOT NULL,
    -- The month's viewers of every app as a set; unique_viewers is its size.
    viewers bytea NOT NULL,
    -- Once the month is over in the workspace's time zone, the sums of its
    -- days' packed counters (workspace_days.apps and viewer_counts), made by
    -- close_months (sql/rollups.sql) and kept by every write after: a read
    -- over a year sums a value a month, not 365. NULL while the month runs,
    -- as each fold would write the month's value whole.
    apps bytea,
    viewer_counts bytea,
    PRIMARY KEY (workspace_id, month)
);
COMMENT ON TABLE audience_internal.workspace_months IS
    'Rollup: unique viewers, views and the set of viewers per workspace per month, the viewers and views of its apps public now, and, once the month is over, the packed counters of its apps and viewers.';

-- Rollups for the usage questions' totals (sql/usage.sql): per app and day,
-- and per workspace and day, the sessions, visits and ended session time,
-- and the exact set of viewers (audience_internal.viewer_set, a compressed
-- bitmap of viewer ids). A window's distinct viewers are the union of its
-- days' sets, and its counts a sum over a row per day, however many viewers
-- those days had. An app's day also packs each viewer's counters
-- (viewer_counts, src/packed_counts.rs: sessions, visits, ended session
-- time and latest view, identifiable views apart from the others), which
-- the questions about people read for some apps: one value per app and
-- day, where a row per viewer made a batch write as many rows as events.
CREATE TABLE audience_internal.app_days (
    workspace_id bigint NOT NULL,
    app_id bigint NOT NULL,
    day date NOT NULL,
    sessions bigint NOT NULL,
    visits bigint NOT NULL,
    session_micros bigint NOT NULL,
    viewers bytea NOT NULL,
    viewer_counts bytea NOT NULL,
    PRIMARY KEY (workspace_id, app_id, day),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
CREATE INDEX app_days_day ON audience_internal.app_days (workspace_id, day);
COMMENT ON TABLE audience_internal.app_days IS
    'Rollup: sessions, visits, ended session time, the set of viewers and each viewer''s counters of each app per day.';

CREATE TABLE audience_internal.workspace_days (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    day date NOT NULL,
    sessions bigint NOT NULL,
    visits bigint NOT NULL,
    session_micros bigint NOT NULL,
    viewers bytea NOT NULL,
    -- The same counters per app, packed (audience_internal.app_counts): a
    -- window's most viewed apps are a sum over a row per day, not over a row
    -- per app and day.
    apps bytea NOT NULL,
    -- The counters of each viewer, identifiable views apart, with the time
    -- of their latest view, packed (audience_internal.viewer_counts): a
    -- window's most active viewers are a sum over a row per day too.
    viewer_counts bytea NOT NULL,
    PRIMARY KEY (workspace_id, day)
);
COMMENT ON TABLE audience_internal.workspace_days IS
    'Rollup: sessions, visits, ended session time and the set of viewers of each workspace per day, and the counters of each app and of each viewer that day.';

-- Which Posit Connect content item is which app, so that later imports of
-- the same content find their app without the content list.
CREATE TABLE audience_internal.connect_content (
    workspace_id bigint NOT NULL,
    content_guid text NOT NULL,
    app_id bigint NOT NULL,
    PRIMARY KEY (workspace_id, content_guid),
    FOREIGN KEY (workspace_id, app_id) REFERENCES audience_internal.apps ON DELETE CASCADE
);
COMMENT ON TABLE audience_internal.connect_content IS 'Posit Connect content guids and the apps they were imported as.';

-- Every Posit Connect record imported, by its natural key, so that an
-- overlapping page records nothing twice. The user is kept as a keyed hash
-- (empty for an anonymous record): a guid names a person as well as an email
-- does.
CREATE TABLE audience_internal.connect_records (
    workspace_id bigint NOT NULL REFERENCES audience_internal.workspaces ON DELETE CASCADE,
    content_guid text NOT NULL,
    user_ref bytea NOT NULL,
    started timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('session', 'visit')),
    ended timestamptz,
    -- The viewer_hash of the event it became, so that erasure
    -- (forget_viewer) finds it.
    viewer_hash bytea NOT NULL,
    PRIMARY KEY (workspace_id, content_guid, user_ref, started, kind)
);
CREATE INDEX connect_records_viewer ON audience_internal.connect_records (workspace_id, viewer_hash);
COMMENT ON TABLE audience_internal.connect_records IS
    'Posit Connect instrumentation records already imported (content, hashed user, start, kind), and the end seen so far.';

-- Column statistics are readable by roles a platform may hand to analysts
-- (pg_read_all_data reads pg_statistic): ANALYZE keeps none for secrets,
-- identities, the hashes that stand for them, or tenant and app names.
ALTER TABLE audience_internal.workspace_keys
    ALTER COLUMN identity_key SET STATISTICS 0,
    ALTER COLUMN pseudonym_key SET STATISTICS 0;
ALTER TABLE audience_internal.token_secrets ALTER COLUMN secret SET STATISTICS 0;
ALTER TABLE audience_internal.spent_tokens ALTER COLUMN token_id SET STATISTICS 0;
ALTER TABLE audience_internal.workspaces
    ALTER COLUMN slug SET STATISTICS 0,
    ALTER COLUMN name SET STATISTICS 0;
ALTER TABLE audience_internal.apps
    ALTER COLUMN slug SET STATISTICS 0,
    ALTER COLUMN name SET STATISTICS 0;
ALTER TABLE audience_internal.members
    ALTER COLUMN identity SET STATISTICS 0,
    ALTER COLUMN identity_hash SET STATISTICS 0,
    ALTER COLUMN db_role SET STATISTICS 0;
ALTER TABLE audience_internal.app_access
    ALTER COLUMN identity SET STATISTICS 0,
    ALTER COLUMN identity_hash SET STATISTICS 0;
ALTER TABLE audience_internal.viewers
    ALTER COLUMN viewer_hash SET STATISTICS 0,
    ALTER COLUMN identity SET STATISTICS 0;
ALTER TABLE audience_internal.app_months ALTER COLUMN viewers SET STATISTICS 0;
ALTER TABLE audience_internal.workspace_months
    ALTER COLUMN public_viewers SET STATISTICS 0,
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN apps SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;
ALTER TABLE audience_internal.app_days
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;
ALTER TABLE audience_internal.workspace_days
    ALTER COLUMN viewers SET STATISTICS 0,
    ALTER COLUMN apps SET STATISTICS 0,
    ALTER COLUMN viewer_counts SET STATISTICS 0;
ALTER TABLE audience_internal.connect_records
    ALTER COLUMN user_ref SET STATISTICS 0,
    ALTER COLUMN viewer_hash SET STATISTICS 0;

-- What each column of the BI views means, for the column lists of the tools
-- that browse them (JDBC REMARKS in Metabase, SQLAlchemy comments in
-- Superset, \d+ in psql). A column name means the same in every view, except
-- where a line names the view. Creating the extension fails if a view has a
-- column without a meaning here, so that no new column ships unexplained.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        WITH meaning(view_name, column_name, remark) AS (VALUES
            (NULL, 'workspace', 'Slug of the workspace.'),
            (NULL, 'app', 'Slug of the app.'),
            ('usage_over_time', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole.'),
            ('viewer_trend', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole.'),
            ('all_monthly_viewers', 'app', 'Slug of the app; NULL in the rows for the workspace as a whole (its apps the requester may see).'),
            (NULL, 'month_start', 'The month''s first instant in the workspace''s time zone, to place the month on a chart''s time axis.'),
            (NULL, 'name', 'Display name of the app.'),
            (NULL, 'visibility', 'public (anyone with the link may open the app) or private (members and people granted it), as it is now.'),
            (NULL, 'month', 'A calendar month in the workspace''s time zone, as its first day.'),
            (NULL, 'unique_viewers', 'Distinct viewers (people and anonymous visitors) in the row''s period.'),
            (NULL, 'views', 'Views (each opening of an app, sessions and visits) in the row''s period.'),
            ('top_viewers', 'views', 'Views by this viewer in the last 30 days.'),
            ('recent_viewers', 'views', 'Views of the app by this viewer, all time.'),
            (NULL, 'complete', 'false for the month in progress, whose figures still grow.'),
            (NULL, 'total_viewers', 'Distinct viewers of the app since the workspace''s counting start.'),
            (NULL, 'viewer', 'Who viewed: their identity when the view is identified to the requester, otherwise a pseudonym such as Enigmatic Brownie.'),
            (NULL, 'viewer_ref', 'A stable reference to the viewer of this row, for counting and joining; a person''s identified and pseudonymous rows have unrelated references.'),
            (NULL, 'pseudonymous', 'true when viewer is a pseudonym.'),
            (NULL, 'last_viewed_at', 'Time of the latest view.'),
            (NULL, 'last_viewed', 'The latest view in words, e.g. 5 minutes ago.'),
            (NULL, 'started_at', 'When the view began.'),
            (NULL, 'ended_at', 'When the session ended; NULL for a visit or a session still open.'),
            (NULL, 'duration', 'ended_at - started_at; NULL for a visit or a session still open.'),
            ('app_sessions', 'kind', 'session (an opening of a running app) or visit (a view of static content).'),
            (NULL, 'sessions', 'Views that are sessions, in the row''s period.'),
            (NULL, 'visits', 'Views that are visits, in the row''s period.'),
            (NULL, 'session_time', 'Total duration of the ended sessions in the row''s period.'),
            (NULL, 'period', 'Start of the day in the workspace''s time zone.'),
            (NULL, 'previous', 'unique_viewers of the month before.'),
            (NULL, 'change', 'unique_viewers - previous.'),
            (NULL, 'change_pct', 'change as a percentage of previous; NULL when previous is 0.'),
            (NULL, 'member', 'Identity of the person who may open the app.'),
            ('app_access', 'kind', 'Member kind: admin, developer or viewer; NULL for a person who holds only a grant.'),
            (NULL, 'status', 'active, or invited until the invitation is accepted.'),
            (NULL, 'via', 'Why the person may open the app: admin, developer, member (a viewer member, public app), grant, or invitation.')
        )
        SELECT v.oid::regclass AS view, a.attname AS column_name,
               coalesce(own.remark, general.remark) AS remark
          FROM pg_catalog.pg_class v
          JOIN pg_catalog.pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN meaning own ON own.view_name = v.relname AND own.column_name = a.attname
          LEFT JOIN meaning general ON general.view_name IS NULL AND general.column_name = a.attname
         WHERE v.relnamespace = 'audience'::regnamespace AND v.relkind = 'v'
    LOOP
        IF c.remark IS NULL THEN
            RAISE EXCEPTION 'column %.% has no meaning in sql/view_columns.sql', c.view, c.column_name;
        END IF;
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', c.view, c.column_name, c.remark);
    END LOOP;
END
$$;

COMMENT ON SCHEMA audience IS
    'Viewer analytics of an app-hosting platform (pg_audience), answered for whoever asks: views for BI tools, and the read, ingest and management functions.';

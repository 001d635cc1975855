-- Erasure (docs/spec.md §2): a person removed from every workspace.

CREATE FUNCTION audience.forget_viewer(identity text)
RETURNS TABLE (workspace text, events bigint, apps bigint, memberships bigint, grants bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 3
-- Definer rights: it reads every workspace's identity key and deletes rows
-- the caller holds no privilege on.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
#variable_conflict use_column
DECLARE
    ident text := audience_internal.normalize_identity('identity', audience_internal.require(forget_viewer.identity, 'identity'));
    ws record;
    tz text;
    v_id bigint;
    n_events bigint;
    n_apps bigint;
    n_members bigint;
    n_grants bigint;
    -- The person's share of each counter.
    gone_totals audience_internal.app_totals[];
    gone_app_months audience_internal.app_months[];
    gone_months audience_internal.workspace_months[];
    gone_days audience_internal.app_days[];
    retired timestamptz;
BEGIN
    PERFORM audience_internal.require_read_committed();
    -- Where the raw events stop (audience.retire_events), asked under a lock
    -- that a retirement in progress takes first: it commits, and is seen,
    -- before any event is read.
    LOCK TABLE ONLY audience_internal.view_events IN ACCESS SHARE MODE;
    retired := audience_internal.retired_before();
    FOR ws IN
        SELECT w.workspace_id, w.slug, audience_internal.identity_hash(k.identity_key, ident) AS hash
          FROM audience_internal.workspaces w
          JOIN audience_internal.workspace_keys k ON k.workspace_id = w.workspace_id
         ORDER BY w.workspace_id
    LOOP
        n_events := 0;
        n_apps := 0;
        v_id := NULL;
        -- A workspace where the person has viewed is locked as
        -- configure_workspace locks it, first and FOR UPDATE (the
        -- lock order at the top of sql/ingest.sql): its ingest in progress
        -- commits first and is erased too, and later ingest waits for the
        -- erasure and records the person anew. Other workspaces are not
        -- locked, so that their ingest goes on; a first view of the person
        -- there not yet committed when looked for here is kept, as one
        -- recorded after the erasure.
        IF EXISTS (SELECT FROM audience_internal.viewers v
                    WHERE v.workspace_id = ws.workspace_id AND v.viewer_hash = ws.hash) THEN
            PERFORM FROM audience_internal.workspace_keys k WHERE k.workspace_id = ws.workspace_id FOR UPDATE;
            SELECT w.time_zone INTO tz FROM audience_internal.workspaces w WHERE w.workspace_id = ws.workspace_id;
            SELECT v.viewer_id INTO v_id FROM audience_internal.viewers v
             WHERE v.workspace_id = ws.workspace_id AND v.viewer_hash = ws.hash
               FOR UPDATE;
        END IF;
        IF v_id IS NOT NULL THEN
            -- The person's pending events first go where the counters below
            -- are read from.
            PERFORM audience_internal.fold_pending(ARRAY[ws.workspace_id]);
            -- What the person adds to each counter, read before their rows go
            -- (no other writer of this workspace runs while it is locked), so
            -- that every other answer stays what the remaining events say.
            SELECT count(*),
                   coalesce(array_agg(ROW(av.workspace_id, av.app_id, 1, av.counted_views)::audience_internal.app_totals)
                                FILTER (WHERE av.counted_views > 0), '{}')
              INTO n_apps, gone_totals
              FROM audience_internal.app_viewers av
             WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id;
            -- Their counters of each app and day: from their events, and
            -- for the days whose events may have been retired
            -- (retire_events), from the day's packed counters, which hold
            -- them whole. Months and workspace totals are sums of these.
            SELECT coalesce(array_agg(ROW(ws.workspace_id, d.app_id, d.day, d.sessions, d.visits, d.session_micros,
                                          NULL, NULL)::audience_internal.app_days), '{}')
              INTO gone_days
              FROM (SELECT e.app_id, audience_internal.day_of(e.viewed_at, tz) AS day,
                           count(*) FILTER (WHERE e.kind = 'session') AS sessions,
                           count(*) FILTER (WHERE e.kind = 'visit') AS visits,
                           sum(audience_internal.session_micros(e.kind, e.viewed_at, e.ended_at))::bigint AS session_micros
                      FROM audience_internal.view_events e
                     WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id
                       AND (retired IS NULL OR audience_internal.day_of(e.viewed_at, tz) > audience_internal.day_of(retired, tz))
                     GROUP BY 1, 2
                    UNION ALL
                    SELECT d.app_id, d.day, c.share[1], c.share[2], c.share[3]
                      FROM audience_internal.app_days d
                     CROSS JOIN LATERAL (SELECT audience_internal.viewer_counts_of(d.viewer_counts, v_id) AS share) c
                     WHERE d.workspace_id = ws.workspace_id AND d.day <= audience_internal.day_of(retired, tz)
                       AND c.share IS NOT NULL) d;
            SELECT coalesce(array_agg(ROW(ws.workspace_id, g.app_id, g.month, 1, g.n, NULL)::audience_internal.app_months), '{}')
              INTO gone_app_months
              FROM (SELECT g.app_id, audience_internal.month_of_day(g.day) AS month, sum(g.sessions + g.visits) AS n
                      FROM unnest(gone_days) g
                     GROUP BY 1, 2) g;
            -- A month's apps: what its packed counters of apps lose, if the
            -- month is over (close_months).
            SELECT coalesce(array_agg(ROW(ws.workspace_id, m.month, 1, m.n, NULL, m.public_n, NULL, p.apps, NULL)
                                          ::audience_internal.workspace_months), '{}')
              INTO gone_months
              FROM (SELECT g.month, sum(g.views) AS n, coalesce(sum(g.views) FILTER (WHERE a.visibility = 'public'), 0) AS public_n
                      FROM unnest(gone_app_months) g
                      JOIN audience_internal.apps a ON a.workspace_id = ws.workspace_id AND a.app_id = g.app_id
                     GROUP BY 1) m
              JOIN (SELECT audience_internal.month_of_day(g.day) AS month,
                           audience_internal.app_counts(array_agg(g.app_id), array_agg(g.sessions), array_agg(g.visits),
                                                        array_agg(g.session_micros)) AS apps
                      FROM unnest(gone_days) g
                     GROUP BY 1) p ON p.month = m.month;

            -- Then every row of the person goes, table by table in the lock
            -- order (rather than by the ON DELETE CASCADE of the viewer,
            -- whose order is not defined), the viewer row last. A counter
            -- left at zero is a row that the events no longer justify.
            DELETE FROM audience_internal.view_events e WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id;
            GET DIAGNOSTICS n_events = ROW_COUNT;
            DELETE FROM audience_internal.app_viewers av WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id;
            UPDATE audience_internal.app_totals t
               SET viewers = t.viewers - g.viewers, views = t.views - g.views
              FROM unnest(gone_totals) g
             WHERE t.workspace_id = ws.workspace_id AND t.app_id = g.app_id;
            DELETE FROM audience_internal.app_totals t USING unnest(gone_totals) g
             WHERE t.workspace_id = ws.workspace_id AND t.app_id = g.app_id AND t.views = 0;
            UPDATE audience_internal.app_months am
               SET unique_viewers = am.unique_viewers - g.unique_viewers, views = am.views - g.views,
                   viewers = audience_internal.viewer_set_without(am.viewers, v_id)
              FROM unnest(gone_app_months) g
             WHERE am.workspace_id = ws.workspace_id AND am.app_id = g.app_id AND am.month = g.month;
            DELETE FROM audience_internal.app_months am USING unnest(gone_app_months) g
             WHERE am.workspace_id = ws.workspace_id AND am.app_id = g.app_id AND am.month = g.month AND am.views = 0;
            UPDATE audience_internal.workspace_months wm
               SET unique_viewers = wm.unique_viewers - g.unique_viewers, views = wm.views - g.views,
                   viewers = audience_internal.viewer_set_without(wm.viewers, v_id),
                   public_viewers = audience_internal.viewer_set_without(wm.public_viewers, v_id),
                   public_views = wm.public_views - g.public_views,
                   apps = audience_internal.packed_counts_subtract(wm.apps, g.apps),
                   viewer_counts = audience_internal.viewer_counts_without(wm.viewer_counts, v_id)
              FROM unnest(gone_months) g
             WHERE wm.workspace_id = ws.workspace_id AND wm.month = g.month;
            DELETE FROM audience_internal.workspace_months wm USING unnest(gone_months) g
             WHERE wm.workspace_id = ws.workspace_id AND wm.month = g.month AND wm.views = 0;
            UPDATE audience_internal.app_days d
               SET sessions = d.sessions - g.sessions, visits = d.visits - g.visits,
                   session_micros = d.session_micros - g.session_micros,
                   viewers = audience_internal.viewer_set_without(d.viewers, v_id),
                   viewer_counts = audience_internal.viewer_counts_without(d.viewer_counts, v_id)
              FROM unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.app_id = g.app_id AND d.day = g.day;
            DELETE FROM audience_internal.app_days d USING unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.app_id = g.app_id AND d.day = g.day
               AND d.sessions + d.visits = 0;
            UPDATE audience_internal.workspace_days d
               SET sessions = d.sessions - g.sessions, visits = d.visits - g.visits,
                   session_micros = d.session_micros - g.session_micros,
                   viewers = audience_internal.viewer_set_without(d.viewers, v_id),
                   apps = audience_internal.packed_counts_subtract(d.apps, g.apps),
                   viewer_counts = audience_internal.viewer_counts_without(d.viewer_counts, v_id)
              FROM (SELECT g.day, sum(g.sessions) AS sessions, sum(g.visits) AS visits,
                           sum(g.session_micros) AS session_micros,
                           audience_internal.app_counts(array_agg(g.app_id), array_agg(g.sessions),
                                                        array_agg(g.visits), array_agg(g.session_micros)) AS apps
                      FROM unnest(gone_days) g GROUP BY 1) g
             WHERE d.workspace_id = ws.workspace_id AND d.day = g.day;
            DELETE FROM audience_internal.workspace_days d USING unnest(gone_days) g
             WHERE d.workspace_id = ws.workspace_id AND d.day = g.day AND d.sessions + d.visits = 0;
            DELETE FROM audience_internal.viewers v WHERE v.workspace_id = ws.workspace_id AND v.viewer_id = v_id;
        END IF;
        DELETE FROM audience_internal.members m WHERE m.workspace_id = ws.workspace_id AND m.identity_hash = ws.hash;
        GET DIAGNOSTICS n_members = ROW_COUNT;
        DELETE FROM audience_internal.app_access g WHERE g.workspace_id = ws.workspace_id AND g.identity_hash = ws.hash;
        GET DIAGNOSTICS n_grants = ROW_COUNT;
        -- What a Posit import remembers of their sessions goes too (a later
        -- import of the same records would record them again).
        DELETE FROM audience_internal.connect_records c WHERE c.workspace_id = ws.workspace_id AND c.viewer_hash = ws.hash;
        IF n_events + n_apps + n_members + n_grants > 0 THEN
            workspace := ws.slug;
            events := n_events;
            apps := n_apps;
            memberships := n_members;
            grants := n_grants;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION audience.forget_viewer(text) IS
    'Erases a person (by identity) from every workspace: their view events, their rows in every rollup, memberships and app grants; every other answer stays consistent. Returns, per workspace, how many events, app rollup rows, memberships and grants were removed. Operator only.';

-- Erasure (SPEC §2): a person removed from every workspace.

CREATE FUNCTION audience.forget_viewer(identity text)
RETURNS TABLE (workspace text, events bigint, apps bigint, memberships bigint, grants bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
-- Definer rights: it reads every workspace's identity key and deletes rows
-- the caller holds no privilege on.
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ident text := audience_internal.normalize_identity('identity', audience_internal.require(forget_viewer.identity, 'identity'));
    ws record;
    v_id bigint;
    n_events bigint;
    n_apps bigint;
    n_members bigint;
    n_grants bigint;
BEGIN
    FOR ws IN
        SELECT w.workspace_id, w.slug, audience_internal.identity_hash(k.identity_key, ident) AS hash
          FROM audience_internal.workspaces w
          JOIN audience_internal.workspace_keys k ON k.workspace_id = w.workspace_id
         ORDER BY w.workspace_id
    LOOP
        SELECT v.viewer_id INTO v_id FROM audience_internal.viewers v
         WHERE v.workspace_id = ws.workspace_id AND v.viewer_hash = ws.hash
           FOR UPDATE;
        n_events := 0;
        n_apps := 0;
        IF v_id IS NOT NULL THEN
            -- Take the viewer out of the counters before its rows go, so
            -- every other answer stays what the remaining events say.
            UPDATE audience_internal.app_totals t
               SET viewers = t.viewers - 1, views = t.views - av.counted_views
              FROM audience_internal.app_viewers av
             WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id AND av.counted_views > 0
               AND t.workspace_id = av.workspace_id AND t.app_id = av.app_id;
            UPDATE audience_internal.app_months am
               SET unique_viewers = am.unique_viewers - 1, views = am.views - e.n
              FROM (SELECT e.app_id, date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone)::date AS month, count(*) AS n
                      FROM audience_internal.view_events e
                      JOIN audience_internal.workspaces w ON w.workspace_id = e.workspace_id
                     WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id
                     GROUP BY 1, 2) e
             WHERE am.workspace_id = ws.workspace_id AND am.app_id = e.app_id AND am.month = e.month;
            UPDATE audience_internal.workspace_months wm
               SET unique_viewers = wm.unique_viewers - 1, views = wm.views - e.n
              FROM (SELECT date_trunc('month', e.viewed_at AT TIME ZONE w.time_zone)::date AS month, count(*) AS n
                      FROM audience_internal.view_events e
                      JOIN audience_internal.workspaces w ON w.workspace_id = e.workspace_id
                     WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id
                     GROUP BY 1) e
             WHERE wm.workspace_id = ws.workspace_id AND wm.month = e.month;
            SELECT count(*) INTO n_events FROM audience_internal.view_events e
             WHERE e.workspace_id = ws.workspace_id AND e.viewer_id = v_id;
            SELECT count(*) INTO n_apps FROM audience_internal.app_viewers av
             WHERE av.workspace_id = ws.workspace_id AND av.viewer_id = v_id;
            -- Events, per-app and per-month rows go with the viewer (ON DELETE CASCADE).
            DELETE FROM audience_internal.viewers v WHERE v.workspace_id = ws.workspace_id AND v.viewer_id = v_id;
            -- A counter left at zero is a row that the events no longer justify.
            DELETE FROM audience_internal.app_totals t WHERE t.workspace_id = ws.workspace_id AND t.views = 0;
            DELETE FROM audience_internal.app_months am WHERE am.workspace_id = ws.workspace_id AND am.views = 0;
            DELETE FROM audience_internal.workspace_months wm WHERE wm.workspace_id = ws.workspace_id AND wm.views = 0;
        END IF;
        DELETE FROM audience_internal.members m WHERE m.workspace_id = ws.workspace_id AND m.identity_hash = ws.hash;
        GET DIAGNOSTICS n_members = ROW_COUNT;
        DELETE FROM audience_internal.app_access g WHERE g.workspace_id = ws.workspace_id AND g.identity_hash = ws.hash;
        GET DIAGNOSTICS n_grants = ROW_COUNT;
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

-- How a viewer is labelled in a result (docs/spec.md §2). This file is the one place
-- that decides between an identity and a pseudonym.
--
-- These are plain SQL functions without SET clauses so that the planner
-- inlines them into the queries that use them. Every read labels its rows
-- with `labelled`; nothing else joins members or keys to make a label.

-- A viewer is shown by identity when the view shown is on or after the
-- workspace's identification start, and either the viewer is an accepted
-- member of the workspace now (membership is judged when the question is
-- asked), or the view was made by an authenticated viewer while the app was
-- private. Everyone else (outsiders on public apps, anonymous visitors, views
-- from while a now-private app was public, views before the identification
-- start) is shown under a pseudonym.
CREATE FUNCTION audience_internal.is_identified(
    viewed_at timestamptz,
    identification_start timestamptz,
    is_member boolean,
    identifiable_view boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT viewed_at >= identification_start AND (coalesce(is_member, false) OR coalesce(identifiable_view, false))
$$;

CREATE FUNCTION audience_internal.viewer_label(
    identified boolean, identity text, pseudonym_key bytea, viewer_hash bytea, scope text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN identified THEN identity ELSE audience_internal.viewer_pseudonym(pseudonym_key, viewer_hash, scope) END
$$;

-- What a pseudonym is scoped to beyond its workspace, by the workspace's
-- settings: the month of the view shown, and/or the requester.
CREATE FUNCTION audience_internal.pseudonym_scope(workspace_id bigint, viewed_at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT concat_ws('|',
             CASE WHEN w.pseudonym_rotation = 'monthly'
                  THEN 'month:' || to_char(audience_internal.month_of(pseudonym_scope.viewed_at, w.time_zone), 'YYYY-MM') END,
             CASE WHEN w.pseudonym_scope = 'requester'
                  THEN 'requester:' || coalesce(
                           (SELECT encode(m.identity_hash, 'hex') FROM audience_internal.requester_memberships() m
                             WHERE m.workspace_id = w.workspace_id LIMIT 1),
                           'role:' || audience_internal.caller_role()::text) END)
      FROM audience_internal.workspaces w
     WHERE w.workspace_id = pseudonym_scope.workspace_id
$$;

-- The viewers of a workspace who are its accepted members now, for reads
-- that label many views at once.
CREATE FUNCTION audience_internal.member_viewer_ids(workspace_id bigint)
RETURNS bigint[] LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ARRAY(SELECT v.viewer_id
                   FROM audience_internal.members m
                   JOIN audience_internal.viewers v
                     ON v.workspace_id = m.workspace_id AND v.viewer_hash = m.identity_hash
                  WHERE m.workspace_id = member_viewer_ids.workspace_id AND m.status = 'active')
$$;

-- What makes two views of one viewer carry the same label: whether they are
-- identified, and for a pseudonym rotated monthly, its month (NULL
-- otherwise: a name is the same every month). Reads that sum many views per
-- label group by it. (One row; a set-returning function so that the
-- planner inlines it into the read, where a plain call cost a function
-- start per call.)
CREATE FUNCTION audience_internal.label_key(
    workspace audience_internal.workspaces, is_member boolean, at timestamptz, identifiable boolean)
RETURNS TABLE (identified boolean, label_at timestamptz) LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1
AS $$
    SELECT i.identified,
           CASE WHEN (label_key.workspace).pseudonym_rotation = 'monthly' AND NOT i.identified
                THEN audience_internal.month_of(label_key.at, (label_key.workspace).time_zone)::timestamp
                     AT TIME ZONE (label_key.workspace).time_zone END
      FROM (SELECT audience_internal.is_identified(label_key.at, (label_key.workspace).identification_start,
                                                   label_key.is_member, label_key.identifiable) AS identified) i
$$;

-- The label of a viewer's views: their identity when identified (as a
-- member, or as stored from a view of a private app), otherwise their
-- pseudonym; the viewer_ref beside it; whether it is a pseudonym. `at` is a
-- time of the views labelled, which places a monthly pseudonym.
-- `identified` is given by a read that decided it for many views at once;
-- NULL decides it here for one view (or the latest of a viewer's views) at
-- `at`, `identifiable` as stored: the viewer is a member now when their
-- hash is an active member's (members are unique by hash), found by the
-- join the label needs anyway. (One row; a set-returning function so that
-- the planner inlines it, joins and all, into the read: no function runs per
-- row but the keyed hashes.)
CREATE FUNCTION audience_internal.labelled(
    workspace_id bigint, viewer_id bigint, identified boolean, at timestamptz, identifiable boolean DEFAULT NULL)
RETURNS TABLE (viewer text, viewer_ref text, pseudonymous boolean)
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 1
AS $$
    SELECT audience_internal.viewer_label(s.identified, coalesce(m.identity, v.identity), k.pseudonym_key,
                                          v.viewer_hash, s.scope),
           audience_internal.viewer_ref(k.pseudonym_key, v.viewer_hash, s.identified, s.scope),
           NOT s.identified
      FROM audience_internal.viewers v
      JOIN audience_internal.workspaces w ON w.workspace_id = v.workspace_id
      JOIN audience_internal.workspace_keys k ON k.workspace_id = v.workspace_id
      LEFT JOIN audience_internal.members m
        ON m.workspace_id = v.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
     CROSS JOIN LATERAL (
          SELECT coalesce(labelled.identified,
                          audience_internal.is_identified(labelled.at, w.identification_start, m.member_id IS NOT NULL,
                                                          labelled.identifiable)) AS identified,
                 CASE WHEN w.pseudonym_rotation = 'none' AND w.pseudonym_scope = 'workspace' THEN ''
                      ELSE audience_internal.pseudonym_scope(w.workspace_id, labelled.at) END AS scope) s
     WHERE v.workspace_id = labelled.workspace_id AND v.viewer_id = labelled.viewer_id
$$;

-- How a viewer is labelled in a result (docs/spec.md §2). This file is the one place
-- that decides between an identity and a pseudonym.
--
-- The rule's pieces are plain SQL functions of their arguments, which the
-- planner inlines into the queries that use them and which may run on any
-- node; `labels` reads the tables a label needs, as PL/pgSQL (docs/citus.md).
-- Every read labels its rows with `labels`; nothing else joins members or
-- keys to make a label.

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
-- settings: the month of the view shown (pseudonym_rotation 'monthly'),
-- and/or the requester (`requester`, from requester_scope; NULL unless the
-- workspace's pseudonym_scope is 'requester'). '' when neither. STABLE
-- as to_char is, so that the planner inlines it into the label's query: a
-- SQL function left as a call cost a tenth of a millisecond per label.
CREATE FUNCTION audience_internal.pseudonym_scope(
    pseudonym_rotation text, time_zone text, requester text, viewed_at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT concat_ws('|',
             CASE WHEN pseudonym_scope.pseudonym_rotation = 'monthly'
                  THEN 'month:' || to_char(audience_internal.month_of(pseudonym_scope.viewed_at, pseudonym_scope.time_zone),
                                           'YYYY-MM') END,
             pseudonym_scope.requester)
$$;

-- The requester's part of a pseudonym's scope in a workspace whose
-- pseudonyms are scoped to the requester: their membership, or their role.
CREATE FUNCTION audience_internal.requester_scope(workspace_id bigint)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM audience_internal.workspaces w
                    WHERE w.workspace_id = requester_scope.workspace_id AND w.pseudonym_scope = 'requester') THEN
        RETURN NULL;
    END IF;
    RETURN 'requester:' || coalesce(
        (SELECT encode(m.identity_hash, 'hex') FROM audience_internal.requester_memberships(requester_scope.workspace_id) m
          LIMIT 1),
        'role:' || audience_internal.caller_role()::text);
END
$$;

-- The viewers of a workspace who are its accepted members now, for reads
-- that label many views at once.
CREATE FUNCTION audience_internal.member_viewer_ids(workspace_id bigint)
RETURNS bigint[] LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    RETURN ARRAY(SELECT v.viewer_id
                   FROM audience_internal.members m
                   JOIN audience_internal.viewers v
                     ON v.workspace_id = m.workspace_id AND v.viewer_hash = m.identity_hash
                  WHERE m.workspace_id = member_viewer_ids.workspace_id AND m.status = 'active');
END
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

-- The labels of some viewers' views in one workspace, one row per element
-- of the arrays (`n` its place, from 1): the viewer's identity when
-- identified (as a member, or as stored from a view of a private app),
-- otherwise their pseudonym; the viewer_ref beside it; whether it is a
-- pseudonym. `ats` holds a time of the views labelled, which places a
-- monthly pseudonym. An element of `identified` is given by a read that
-- decided it for many views at once; NULL decides it here for one view (or
-- the latest of a viewer's views) at its time, `identifiable` as stored:
-- the viewer is a member now when their hash is an active member's
-- (members are unique by hash), found by the join the label needs anyway.
-- One query over the workspace's rows, so one worker's on Citus; the
-- pseudonym key is read where it is stored, never passed in.
CREATE FUNCTION audience_internal.labels(
    workspace_id bigint, viewer_ids bigint[], identified boolean[], ats timestamptz[], identifiable boolean[])
RETURNS TABLE (n bigint, viewer text, viewer_ref text, pseudonymous boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
AS $$
#variable_conflict use_column
DECLARE
    requester text := audience_internal.requester_scope(labels.workspace_id);
BEGIN
    -- The workspace's settings and key are read once (a plan for any
    -- workspace, kept for the session, otherwise reads them per viewer).
    RETURN QUERY
    WITH w AS MATERIALIZED (
        SELECT x.identification_start, x.pseudonym_rotation, x.time_zone, k.pseudonym_key
          FROM audience_internal.workspaces x
          JOIN audience_internal.workspace_keys k ON k.workspace_id = x.workspace_id
         WHERE x.workspace_id = labels.workspace_id AND k.workspace_id = labels.workspace_id
    )
    SELECT u.n,
           audience_internal.viewer_label(s.identified, coalesce(m.identity, v.identity), w.pseudonym_key,
                                          v.viewer_hash, s.scope),
           audience_internal.viewer_ref(w.pseudonym_key, v.viewer_hash, s.identified, s.scope),
           NOT s.identified
      FROM w
     CROSS JOIN unnest(labels.viewer_ids, labels.identified, labels.ats, labels.identifiable)
               WITH ORDINALITY u(viewer_id, identified, at, identifiable, n)
      JOIN audience_internal.viewers v ON v.workspace_id = labels.workspace_id AND v.viewer_id = u.viewer_id
      LEFT JOIN audience_internal.members m
        ON m.workspace_id = labels.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
     CROSS JOIN LATERAL (
          SELECT coalesce(u.identified,
                          audience_internal.is_identified(u.at, w.identification_start, m.member_id IS NOT NULL,
                                                          u.identifiable)) AS identified,
                 audience_internal.pseudonym_scope(w.pseudonym_rotation, w.time_zone, requester, u.at) AS scope) s;
END
$$;

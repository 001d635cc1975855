-- How a viewer is labelled in a result (SPEC §2). This file is the one place
-- that decides between an identity and a pseudonym.
--
-- These are plain SQL functions without SET clauses so that the planner
-- inlines them into the queries that use them.

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
    SELECT $1 >= $2 AND (coalesce($3, false) OR coalesce($4, false))
$$;

CREATE FUNCTION audience_internal.viewer_label(
    identified boolean, identity text, pseudonym_key bytea, viewer_hash bytea, scope text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN $1 THEN $2 ELSE audience_internal.viewer_pseudonym($3, $4, $5) END
$$;

-- Which of two views of a viewer is shown is the later one; whether it was
-- identifiable decides the label. For views at the same instant, either one
-- being identifiable counts. Every write path merges its rollup rows with
-- this, and rebuild_rollups computes the same from raw events.
CREATE FUNCTION audience_internal.latest_identifiable(
    kept_at timestamptz, kept boolean, new_at timestamptz, new boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN $3 > $1 THEN $4 WHEN $3 = $1 THEN $2 OR $4 ELSE $2 END
$$;

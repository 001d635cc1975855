//! Checks on the stored state itself once the writers are done (besides
//! every rollup equal to a rebuild, tests/common): the plaintext of an
//! identity is kept only where a view may show it (docs/spec.md §2, data
//! minimisation), the identifiable flag stored with each view agrees with
//! the app's visibility history, and an erased person leaves no trace.

use postgres::Client;

/// A viewer's identity is stored exactly when one of its views may show it
/// (an identifiable view); anonymous visitors never have one.
pub fn minimisation(op: &mut Client) -> Vec<String> {
    op.query(
        "SELECT w.slug, v.viewer_id, v.anonymous, v.identity IS NOT NULL,
                EXISTS (SELECT FROM audience_internal.view_events e
                         WHERE e.workspace_id = v.workspace_id AND e.viewer_id = v.viewer_id AND e.identifiable),
                EXISTS (SELECT FROM audience_internal.view_events e
                         WHERE e.workspace_id = v.workspace_id AND e.viewer_id = v.viewer_id)
           FROM audience_internal.viewers v JOIN audience_internal.workspaces w USING (workspace_id)",
        &[],
    )
    .unwrap()
    .iter()
    .filter_map(|r| {
        let (slug, id, anonymous, has_identity, identifiable, any): (String, i64, bool, bool, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        if !any {
            Some(format!("workspace {slug}: viewer {id} has no view event left"))
        } else if has_identity != identifiable || (anonymous && has_identity) {
            Some(format!(
                "workspace {slug}: viewer {id} (anonymous {anonymous}) stores an identity: {has_identity}, has an identifiable view: {identifiable}"
            ))
        } else {
            None
        }
    })
    .collect()
}

/// Views whose stored identifiable flag disagrees with the app's visibility
/// history (authenticated and private at the time of the view), apart from
/// views within 30 seconds of a visibility change (see model.rs).
pub fn identifiable_flags(op: &mut Client) -> Vec<String> {
    op.query(
        "SELECT w.slug, a.slug, e.event_id, e.viewed_at::text, e.identifiable
           FROM audience_internal.view_events e
           JOIN audience_internal.workspaces w USING (workspace_id)
           JOIN audience_internal.apps a USING (workspace_id, app_id)
           JOIN audience_internal.viewers v USING (workspace_id, viewer_id)
          WHERE e.identifiable IS DISTINCT FROM
                (NOT v.anonymous AND (SELECT c.visibility FROM audience_internal.app_visibility_changes c
                                       WHERE c.workspace_id = e.workspace_id AND c.app_id = e.app_id
                                         AND c.changed_at <= e.viewed_at
                                       ORDER BY c.changed_at DESC LIMIT 1) = 'private')
            AND NOT EXISTS (SELECT FROM audience_internal.app_visibility_changes c
                             WHERE c.workspace_id = e.workspace_id AND c.app_id = e.app_id
                               AND c.changed_at BETWEEN e.viewed_at - interval '30 seconds' AND e.viewed_at + interval '30 seconds')
          ORDER BY e.event_id LIMIT 5",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let (ws, app, id, at, flag): (String, String, i64, String, bool) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        format!("workspace {ws} app {app}: event {id} at {at} stored identifiable = {flag}, the visibility history says otherwise")
    })
    .collect()
}

/// Erases `identity` (as the operator would) and checks that nothing of it
/// is left in any workspace: viewer, memberships, grants, Posit records.
pub fn forget_leaves_nothing(op: &mut Client, identity: &str) -> Vec<String> {
    if let Err(e) = op.query("SELECT * FROM audience.forget_viewer($1)", &[&identity]) {
        return vec![format!("forget_viewer({identity:?}) failed: {e}")];
    }
    // Workspace by workspace, each query naming its workspace: on Citus a
    // query over every workspace's rows at once cannot be planned.
    let workspaces: Vec<(i64, String, Vec<u8>)> = op
        .query(
            "SELECT k.workspace_id, w.slug,
                    audience_internal.identity_hash(k.identity_key, audience_internal.normalize_identity('identity', $1))
               FROM audience_internal.workspace_keys k JOIN audience_internal.workspaces w USING (workspace_id)",
            &[&identity],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut left = Vec::new();
    for (id, ws, hash) in workspaces {
        let r = op
            .query_one(
                "SELECT (SELECT count(*) FROM audience_internal.viewers v WHERE v.workspace_id = $1 AND v.viewer_hash = $2),
                        (SELECT count(*) FROM audience_internal.members m WHERE m.workspace_id = $1 AND m.identity_hash = $2),
                        (SELECT count(*) FROM audience_internal.app_access g WHERE g.workspace_id = $1 AND g.identity_hash = $2),
                        (SELECT count(*) FROM audience_internal.connect_records c WHERE c.workspace_id = $1 AND c.viewer_hash = $2)",
                &[&id, &hash],
            )
            .unwrap();
        let (v, m, g, c): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        if v + m + g + c > 0 {
            left.push(format!(
                "workspace {ws}: after forget_viewer({identity:?}): {v} viewer, {m} member, {g} grant, {c} Posit record rows left"
            ));
        }
    }
    left
}

//! The model: what every read function should answer, written as plain SQL
//! over the raw tables of schema audience_internal (view_events, viewers,
//! members, apps, app_visibility_changes, app_access, workspaces,
//! workspace_keys), never over the rollups, from docs/spec.md §2 and §3:
//!
//! - who may see what comes from requesters.rs (members by role or token,
//!   the operator), as a `Ctx` per workspace: its access and visible apps;
//! - a view is identified when it is at or after the workspace's
//!   identification start and its viewer is an accepted member now, or it
//!   was made by an authenticated viewer while the app was private, which
//!   the model reads from the app's visibility history, not from the flag
//!   ingest stored. The one exception: a view within 30 seconds of a
//!   visibility change keeps the visibility ingest read (the accepted race
//!   of pg_test/isolation/specs/ingest_visibility.spec: "a view keeps the
//!   visibility its app had when it was made, as the view reads it");
//! - months and days are in the workspace's time zone; a window is
//!   [since, until); session time counts ended sessions only.
//!
//! Labels use the extension's pure helpers (viewer_pseudonym, viewer_ref,
//! relative_time), keyed as docs/spec.md §2 says: the workspace's pseudonym key, and
//! a scope of the month of the view shown (monthly rotation) and/or the
//! requester (requester scope).

use crate::world::lit;

/// A window: the functions' default (the last 30 days up to now) or given.
#[derive(Clone, Copy, Debug)]
pub enum Win {
    Default,
    At(i64, i64),
}

/// One read question about one workspace.
#[derive(Clone, Debug)]
pub enum Q {
    Monthly {
        app: Option<String>,
        months: Option<i32>,
    },
    Trend {
        app: Option<String>,
        months: i32,
    },
    Total {
        app: String,
    },
    Recent {
        app: String,
        max: Option<i32>,
    },
    Sessions {
        app: String,
        win: Win,
        min_duration: Option<&'static str>,
        max: i32,
    },
    TopApps {
        win: Win,
        max: Option<i32>,
    },
    TopViewers {
        app: Option<String>,
        win: Win,
    },
    Usage {
        app: Option<String>,
        win: Win,
        bucket: Option<&'static str>,
    },
    Access {
        app: Option<String>,
    },
}

/// What a requester may see of one workspace, per requesters.rs.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub ws: String,
    pub ws_id: i64,
    /// "all", "some" (an accepted viewer member) or None (nothing).
    pub access: Option<&'static str>,
    /// The apps it sees: (app_id, slug).
    pub visible: Vec<(i64, String)>,
    /// For "some": the identity hashes (hex) of its memberships here.
    pub own: Vec<String>,
    /// What a pseudonym scoped per requester is scoped to.
    pub req_scope: String,
}

impl Ctx {
    fn app_id(&self, slug: &str) -> Option<i64> {
        self.visible.iter().find(|(_, s)| s == slug).map(|(id, _)| *id)
    }

    fn ids(&self) -> String {
        let ids: Vec<String> = self.visible.iter().map(|(id, _)| id.to_string()).collect();
        format!("'{{{}}}'::bigint[]", ids.join(","))
    }
}

fn ts(micros: i64) -> String {
    crate::world::ts(micros)
}

impl Win {
    /// (since, until) as SQL expressions, `now` being the reader's now().
    fn bounds(&self, now: &str) -> (String, String) {
        match self {
            Win::Default => (format!("({now} - interval '30 days')"), now.to_string()),
            Win::At(s, u) => (ts(*s), ts(*u)),
        }
    }

    /// As arguments of a read function.
    pub fn args(&self) -> String {
        match self {
            Win::Default => String::new(),
            Win::At(s, u) => format!(", since => {}, until => {}", ts(*s), ts(*u)),
        }
    }
}

/// Every event with what the labelling rules need: whether it is
/// identified (docs/spec.md §2), its local time, the month its pseudonym is for.
/// Made once per seed, after the writers are done (membership is judged
/// when asked, and nothing changes while the reads are asked), into a
/// temporary table of the model's connection.
pub const EVENTS: &str = "
    CREATE TEMP TABLE model_ev AS
    WITH ev0 AS (
      SELECT e.workspace_id, e.event_id, e.app_id, a.slug AS app, a.visibility AS app_visibility, e.viewer_id,
             v.viewer_hash, e.viewed_at, e.ended_at, e.kind, e.viewed_at AT TIME ZONE w.time_zone AS local_at,
             m.identity AS mi, v.identity AS si, m.member_id IS NOT NULL AS is_member,
             CASE WHEN EXISTS (SELECT FROM audience_internal.app_visibility_changes c
                                WHERE c.workspace_id = e.workspace_id AND c.app_id = e.app_id
                                  AND c.changed_at BETWEEN e.viewed_at - interval '30 seconds'
                                                       AND e.viewed_at + interval '30 seconds')
                  THEN e.identifiable
                  ELSE NOT v.anonymous
                       AND (SELECT c.visibility FROM audience_internal.app_visibility_changes c
                             WHERE c.workspace_id = e.workspace_id AND c.app_id = e.app_id
                               AND c.changed_at <= e.viewed_at
                             ORDER BY c.changed_at DESC LIMIT 1) = 'private'
             END AS identifiable
        FROM audience_internal.view_events e
        JOIN audience_internal.workspaces w ON w.workspace_id = e.workspace_id
        JOIN audience_internal.apps a ON a.workspace_id = e.workspace_id AND a.app_id = e.app_id
        JOIN audience_internal.viewers v ON v.workspace_id = e.workspace_id AND v.viewer_id = e.viewer_id
        LEFT JOIN audience_internal.members m
          ON m.workspace_id = e.workspace_id AND m.identity_hash = v.viewer_hash AND m.status = 'active'
    ),
    ev1 AS (
      SELECT ev0.*, ev0.viewed_at >= w.identification_start AND (ev0.is_member OR ev0.identifiable) AS identified
        FROM ev0 JOIN audience_internal.workspaces w USING (workspace_id)
    )
    SELECT ev1.*, CASE WHEN w.pseudonym_rotation = 'monthly' AND NOT ev1.identified
                       THEN date_trunc('month', ev1.local_at) END AS label_month
      FROM ev1 JOIN audience_internal.workspaces w USING (workspace_id);
    CREATE INDEX ON model_ev (workspace_id, app_id);
    ANALYZE model_ev";

/// The workspace (w), its keys (k) and its events on the apps the requester
/// sees (ev, from `EVENTS`).
fn events(ctx: &Ctx) -> String {
    let id = ctx.ws_id;
    format!(
        "WITH w AS (SELECT * FROM audience_internal.workspaces WHERE workspace_id = {id}),
         k AS (SELECT pseudonym_key FROM audience_internal.workspace_keys WHERE workspace_id = {id}),
         ev AS (SELECT * FROM model_ev WHERE workspace_id = {id} AND app_id = ANY ({ids}))",
        ids = ctx.ids()
    )
}

/// The scope of a pseudonym (and viewer_ref) shown for a view at `at`.
fn scope(ctx: &Ctx, at: &str) -> String {
    format!(
        "concat_ws('|', CASE WHEN w.pseudonym_rotation = 'monthly'
                             THEN 'month:' || to_char(({at}) AT TIME ZONE w.time_zone, 'YYYY-MM') END,
                        CASE WHEN w.pseudonym_scope = 'requester' THEN {} END)",
        lit(&ctx.req_scope)
    )
}

/// viewer, viewer_ref, pseudonymous of a viewer (`hash`) shown by identity
/// (the member's, else the one stored from a view of a private app) when
/// `identified`, otherwise by pseudonym.
fn label(ctx: &Ctx, identified: &str, member: &str, stored: &str, hash: &str, at: &str) -> String {
    let s = scope(ctx, at);
    format!(
        "CASE WHEN {identified} THEN coalesce({member}, {stored})
              ELSE audience_internal.viewer_pseudonym(k.pseudonym_key, {hash}, {s}) END AS viewer,
         audience_internal.viewer_ref(k.pseudonym_key, {hash}, {identified}, {s}) AS viewer_ref,
         NOT {identified} AS pseudonymous"
    )
}

const SESSION_TIME: &str = "justify_hours(coalesce(sum(ev.ended_at - ev.viewed_at)
    FILTER (WHERE ev.kind = 'session' AND ev.ended_at IS NOT NULL), interval '0'))";

/// Distinct viewers and views per month of the last `months` months (the
/// current one last, not complete), of one app or of every visible app.
fn monthly(app: Option<i64>, months: i32, now: &str) -> String {
    let on_app = app.map_or(String::new(), |a| format!("AND ev.app_id = {a}"));
    format!(
        "mo AS (SELECT gs::date AS month, gs < c.cur AS complete
                  FROM (SELECT date_trunc('month', {now} AT TIME ZONE w.time_zone) AS cur FROM w) c,
                       generate_series(c.cur - make_interval(months => {months} - 1), c.cur, interval '1 month') gs),
         monthly AS (SELECT mo.month, count(DISTINCT ev.viewer_id) AS unique_viewers, count(ev.event_id) AS views, mo.complete
                       FROM mo LEFT JOIN ev ON date_trunc('month', ev.local_at)::date = mo.month {on_app}
                      GROUP BY mo.month, mo.complete)",
    )
}

/// The model's SQL for `q` asked by a requester with `ctx` at `now` (an
/// SQL expression), or None when the requester may not see what `q` names:
/// the function must then say the workspace or app does not exist (42704).
pub fn sql(q: &Q, ctx: &Ctx, now: &str) -> Option<String> {
    ctx.access?;
    let app = |slug: &Option<String>| -> Option<Option<i64>> {
        match slug {
            None => Some(None),
            Some(s) => ctx.app_id(s).map(Some),
        }
    };
    let ev = events(ctx);
    Some(match q {
        Q::Monthly { app: a, months } => {
            let a = app(a)?;
            format!(
                "{ev}, {} SELECT * FROM monthly ORDER BY month",
                monthly(a, months.unwrap_or(12), now)
            )
        }
        Q::Trend { app: a, months } => {
            let a = app(a)?;
            format!(
                "{ev}, {}
                 SELECT month, unique_viewers, previous, unique_viewers - previous AS change,
                        CASE WHEN previous > 0 THEN round(100.0 * (unique_viewers - previous) / previous, 1) END AS change_pct,
                        complete
                   FROM (SELECT m.*, lag(m.unique_viewers) OVER (ORDER BY m.month) AS previous FROM monthly m) t
                  ORDER BY month OFFSET 1",
                monthly(a, months + 1, now)
            )
        }
        Q::Total { app: a } => {
            let a = ctx.app_id(a)?;
            format!(
                "{ev} SELECT count(DISTINCT ev.viewer_id) AS total FROM ev, w
                  WHERE ev.app_id = {a} AND ev.viewed_at >= w.counting_start"
            )
        }
        Q::Recent { app: a, max } => {
            let a = ctx.app_id(a)?;
            // The view shown is the viewer's latest; of several at that
            // instant, any one made identifiable counts.
            format!(
                "{ev},
                 per AS (SELECT ev.viewer_id, max(ev.viewed_at) AS last_at, count(*) AS views
                           FROM ev WHERE ev.app_id = {a} GROUP BY ev.viewer_id),
                 lastv AS (SELECT p.viewer_id, p.last_at, p.views, bool_or(ev.identified) AS identified,
                                  max(ev.mi) AS mi, max(ev.si) AS si
                             FROM per p JOIN ev ON ev.app_id = {a} AND ev.viewer_id = p.viewer_id AND ev.viewed_at = p.last_at
                            GROUP BY p.viewer_id, p.last_at, p.views)
                 SELECT {label}, l.last_at AS last_viewed_at, audience.relative_time(l.last_at, {now}) AS last_viewed, l.views
                   FROM lastv l
                   JOIN audience_internal.viewers v ON v.workspace_id = {id} AND v.viewer_id = l.viewer_id
                  CROSS JOIN w CROSS JOIN k
                  ORDER BY l.last_at DESC, l.viewer_id DESC
                  LIMIT {max}",
                id = ctx.ws_id,
                label = label(ctx, "l.identified", "l.mi", "l.si", "v.viewer_hash", "l.last_at"),
                max = max.unwrap_or(20)
            )
        }
        Q::Sessions {
            app: a,
            win,
            min_duration,
            max,
        } => {
            let a = ctx.app_id(a)?;
            let (s, u) = win.bounds(now);
            let min = min_duration.map_or("NULL::interval".to_string(), |d| format!("interval '{d}'"));
            format!(
                "{ev}
                 SELECT {label}, ev.viewed_at AS started_at,
                        CASE WHEN ev.kind = 'session' THEN ev.ended_at END AS ended_at,
                        CASE WHEN ev.kind = 'session' THEN ev.ended_at - ev.viewed_at END AS duration, ev.kind
                   FROM ev CROSS JOIN w CROSS JOIN k
                  WHERE ev.app_id = {a} AND ev.viewed_at >= {s} AND ev.viewed_at < {u}
                    AND ({min} IS NULL OR ev.kind <> 'session' OR ev.ended_at IS NULL
                         OR ev.ended_at - ev.viewed_at >= {min})
                  ORDER BY ev.viewed_at DESC, ev.event_id DESC
                  LIMIT {max}",
                label = label(ctx, "ev.identified", "ev.mi", "ev.si", "ev.viewer_hash", "ev.viewed_at"),
            )
        }
        Q::TopApps { win, max } => {
            let (s, u) = win.bounds(now);
            format!(
                "{ev}
                 SELECT ev.app, ev.app_visibility AS visibility, count(*) AS views,
                        count(*) FILTER (WHERE ev.kind = 'session') AS sessions,
                        count(*) FILTER (WHERE ev.kind = 'visit') AS visits,
                        count(DISTINCT ev.viewer_id) AS unique_viewers, {SESSION_TIME} AS session_time
                   FROM ev WHERE ev.viewed_at >= {s} AND ev.viewed_at < {u}
                  GROUP BY ev.app, ev.app_visibility
                  ORDER BY views DESC, ev.app
                  LIMIT {max}",
                max = max.unwrap_or(10)
            )
        }
        Q::TopViewers { app: a, win } => {
            let a = app(a)?;
            let (s, u) = win.bounds(now);
            let on_app = a.map_or(String::new(), |a| format!("AND ev.app_id = {a}"));
            // One row per viewer and label: identified views apart from
            // pseudonymous ones, and a monthly pseudonym per month.
            format!(
                "{ev},
                 g AS (SELECT ev.viewer_id, ev.identified, ev.label_month, count(*) AS views,
                              count(*) FILTER (WHERE ev.kind = 'session') AS sessions,
                              {SESSION_TIME} AS session_time, max(ev.viewed_at) AS last_viewed_at,
                              max(ev.mi) AS mi, max(ev.si) AS si
                         FROM ev WHERE ev.viewed_at >= {s} AND ev.viewed_at < {u} {on_app}
                        GROUP BY ev.viewer_id, ev.identified, ev.label_month)
                 SELECT {label}, g.views, g.sessions, g.session_time, g.last_viewed_at
                   FROM g
                   JOIN audience_internal.viewers v ON v.workspace_id = {id} AND v.viewer_id = g.viewer_id
                  CROSS JOIN w CROSS JOIN k",
                id = ctx.ws_id,
                label = label(ctx, "g.identified", "g.mi", "g.si", "v.viewer_hash", "g.last_viewed_at"),
            )
        }
        Q::Usage { app: a, win, bucket } => {
            let a = app(a)?;
            let (s, u) = win.bounds(now);
            let b = bucket.unwrap_or("day");
            let on_app = a.map_or(String::new(), |a| format!("AND ev.app_id = {a}"));
            format!(
                "{ev},
                 p AS (SELECT gs::date AS period
                         FROM w, generate_series(date_trunc('{b}', {s} AT TIME ZONE w.time_zone),
                                                 date_trunc('{b}', ({u} AT TIME ZONE w.time_zone) - interval '1 microsecond'),
                                                 interval '1 {b}') gs)
                 SELECT p.period, count(ev.event_id) AS views,
                        count(ev.event_id) FILTER (WHERE ev.kind = 'session') AS sessions,
                        count(ev.event_id) FILTER (WHERE ev.kind = 'visit') AS visits,
                        count(DISTINCT ev.viewer_id) AS unique_viewers, {SESSION_TIME} AS session_time
                   FROM p LEFT JOIN ev ON date_trunc('{b}', ev.local_at)::date = p.period
                                      AND ev.viewed_at >= {s} AND ev.viewed_at < {u} {on_app}
                  GROUP BY p.period ORDER BY p.period"
            )
        }
        Q::Access { app: a } => {
            let a = app(a)?;
            let on_app = a.map_or(String::new(), |a| format!("AND x.app_id = {a}"));
            let own = if ctx.access == Some("some") {
                format!("AND encode(x.h, 'hex') = ANY ('{{{}}}'::text[])", ctx.own.join(","))
            } else {
                String::new()
            };
            // Who may open each app: admins and developers every app,
            // viewer members (accepted or invited) the public ones, grants
            // their one app; a person with several ways in is listed once,
            // by the strongest (admin/developer, grant, invitation by grant,
            // member, invitation).
            format!(
                "WITH x AS (
                   SELECT a.app_id, a.slug AS app, m.identity AS member, m.kind, m.status, m.identity_hash AS h,
                          CASE WHEN m.status = 'invited' THEN 'invitation' WHEN m.kind = 'viewer' THEN 'member' ELSE m.kind END AS via,
                          CASE WHEN m.status = 'invited' THEN 5 WHEN m.kind = 'viewer' THEN 4 ELSE 1 END AS rank
                     FROM audience_internal.apps a
                     JOIN audience_internal.members m
                       ON m.workspace_id = a.workspace_id AND (m.kind <> 'viewer' OR a.visibility = 'public')
                    WHERE a.workspace_id = {id}
                   UNION ALL
                   SELECT a.app_id, a.slug, g.identity, m.kind, coalesce(m.status, 'active'), g.identity_hash,
                          CASE WHEN m.status = 'invited' THEN 'invitation' ELSE 'grant' END,
                          CASE WHEN m.status = 'invited' THEN 3 ELSE 2 END
                     FROM audience_internal.apps a
                     JOIN audience_internal.app_access g ON g.workspace_id = a.workspace_id AND g.app_id = a.app_id
                     LEFT JOIN audience_internal.members m
                       ON m.workspace_id = g.workspace_id AND m.identity_hash = g.identity_hash
                    WHERE a.workspace_id = {id})
                 SELECT DISTINCT ON (x.app, x.member) x.app, x.member, x.kind, x.status, x.via
                   FROM x WHERE x.app_id = ANY ({ids}) {on_app} {own}
                  ORDER BY x.app, x.member, x.rank",
                id = ctx.ws_id,
                ids = ctx.ids()
            )
        }
    })
}

/// The read function call `q` is about, for workspace `ws`.
pub fn call(q: &Q, ws: &str) -> String {
    let w = lit(ws);
    let app_arg = |a: &Option<String>| a.as_deref().map_or("NULL".to_string(), lit);
    match q {
        Q::Monthly { app: None, months } => format!(
            "SELECT * FROM audience.workspace_monthly_viewers({w}{})",
            months.map_or(String::new(), |m| format!(", {m}"))
        ),
        Q::Monthly { app: Some(a), months } => format!(
            "SELECT * FROM audience.app_monthly_viewers({w}, {}{})",
            lit(a),
            months.map_or(String::new(), |m| format!(", {m}"))
        ),
        Q::Trend { app, months } => format!("SELECT * FROM audience.viewer_trend({w}, {}, {months})", app_arg(app)),
        Q::Total { app } => format!("SELECT audience.app_total_viewers({w}, {}) AS total", lit(app)),
        Q::Recent { app, max } => format!(
            "SELECT * FROM audience.recent_viewers({w}, {}{})",
            lit(app),
            max.map_or(String::new(), |m| format!(", {m}"))
        ),
        Q::Sessions {
            app,
            win,
            min_duration,
            max,
        } => format!(
            "SELECT * FROM audience.app_sessions({w}, {}{}, min_duration => {}, max_sessions => {max})",
            lit(app),
            win.args(),
            min_duration.map_or("NULL".to_string(), |d| format!("interval '{d}'"))
        ),
        Q::TopApps { win, max } => format!(
            "SELECT * FROM audience.top_apps({w}{}{})",
            win.args(),
            max.map_or(String::new(), |m| format!(", max_apps => {m}"))
        ),
        Q::TopViewers { app, win } => format!(
            "SELECT * FROM audience.top_viewers({w}, {}{}, max_viewers => 1000)",
            app_arg(app),
            win.args()
        ),
        Q::Usage { app, win, bucket } => format!(
            "SELECT * FROM audience.usage_over_time({w}, {}{}{})",
            app_arg(app),
            win.args(),
            bucket.map_or(String::new(), |b| format!(", bucket => '{b}'"))
        ),
        Q::Access { app } => format!("SELECT * FROM audience.app_access({w}, {})", app_arg(app)),
    }
}

/// Whether the order of the rows is part of the answer (docs/spec.md §3/§4 give
/// one); otherwise rows are compared as a multiset.
pub fn ordered(q: &Q) -> bool {
    !matches!(q, Q::TopViewers { .. })
}

/// Whether the answer depends on who asks beyond which apps they see (the
/// labels of a pseudonym scoped per requester): the model's answer may be
/// shared by requesters with the same visible apps otherwise.
pub fn labelled(q: &Q) -> bool {
    matches!(q, Q::Recent { .. } | Q::Sessions { .. } | Q::TopViewers { .. })
}

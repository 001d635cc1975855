//! pg_audience: viewer analytics for app-hosting platforms, privacy-correct
//! for whoever asks.
//!
//! This file is only the SQL surface. The data model, write path and read path
//! are plain SQL in `sql/`; Rust does what SQL does badly: keyed hashing,
//! pseudonyms, key generation, relative times and exact viewer sets.

use pgrx::prelude::*;

mod error;
mod packed_counts;
mod privacy;
mod relative_time;
mod rfc3339;
mod viewer_set;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/schema.sql",
    name = "schema",
    requires = ["bootstrap", audience_internal::session_login]
);
extension_sql_file!("../sql/roles.sql", name = "roles", requires = ["bootstrap"]);
extension_sql_file!(
    "../sql/labels.sql",
    name = "labels",
    requires = ["requester", "rollups", audience_internal::viewer_pseudonym, audience_internal::viewer_ref]
);
extension_sql_file!(
    "../sql/checks.sql",
    name = "checks",
    requires = [
        "schema",
        audience_internal::identity_hash,
        audience_internal::normalize_identity_nfc,
        audience_internal::rfc3339_time
    ]
);
extension_sql_file!(
    "../sql/rollups.sql",
    name = "rollups",
    requires = [
        "schema",
        audience_internal::viewer_set,
        audience_internal::viewer_set_union,
        audience_internal::micros_between,
        audience_internal::app_counts,
        audience_internal::viewer_counts,
        audience_internal::packed_counts_add,
        audience_internal::packed_counts_sum
    ]
);
extension_sql_file!(
    "../sql/management.sql",
    name = "management",
    requires = [
        "checks",
        "rollups",
        audience_internal::random_key,
        audience_internal::identity_hash,
        audience_internal::normalize_identity_nfc
    ]
);
extension_sql_file!("../sql/event_store.sql", name = "event_store", requires = ["checks"]);
extension_sql_file!(
    "../sql/ingest.sql",
    name = "ingest",
    requires = [
        "management",
        "event_store",
        "labels",
        audience_internal::anonymous_hash,
        audience_internal::normalize_anonymous_id,
        audience_internal::identity_check
    ]
);
extension_sql_file!("../sql/bulk_ingest.sql", name = "bulk_ingest", requires = ["ingest"]);
extension_sql_file!(
    "../sql/requester.sql",
    name = "requester",
    requires = [
        "management",
        "roles",
        audience_internal::ticket,
        audience_internal::enter,
        audience_internal::caller_role,
        audience_internal::token_subject,
        audience_internal::token_workspace,
        audience_internal::accept_token_once
    ]
);
extension_sql_file!(
    "../sql/analytics.sql",
    name = "analytics",
    requires = ["labels", "ingest", "requester", audience::relative_time]
);
extension_sql_file!(
    "../sql/usage.sql",
    name = "usage",
    requires = [
        "analytics",
        audience_internal::viewer_set_count,
        audience_internal::app_counts_sum,
        audience_internal::viewer_counts_top
    ]
);
extension_sql_file!("../sql/connect_import.sql", name = "connect_import", requires = ["bulk_ingest"]);
extension_sql_file!("../sql/view_columns.sql", name = "view_columns", requires = ["analytics", "usage"]);
extension_sql_file!(
    "../sql/forget.sql",
    name = "forget",
    requires = [
        "analytics",
        "event_store",
        audience_internal::viewer_set_without,
        audience_internal::packed_counts_subtract,
        audience_internal::viewer_counts_of
    ]
);
extension_sql_file!(
    "../sql/policies.sql",
    name = "policies",
    requires = ["requester", "forget", "bulk_ingest", "usage", "connect_import", "view_columns"]
);
extension_sql_file!("../sql/citus.sql", name = "citus", requires = ["policies"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// Helpers for the SQL in `sql/`, in a schema no caller may use: they take
/// keys as arguments, and only the extension's own functions can read keys.
#[pg_schema]
mod audience_internal {
    use crate::error::{AudienceError, OrRaise};
    use crate::privacy::{identity, keys, pseudonym, requester, token};
    use crate::rfc3339;
    use crate::{packed_counts, viewer_set};
    use pgrx::prelude::*;

    /// A new 32-byte key from the operating system's random source.
    #[pg_extern(volatile, parallel_safe)]
    fn random_key() -> Vec<u8> {
        keys::new_key().to_vec()
    }

    #[pg_extern(immutable, strict, parallel_safe)]
    fn identity_hash(key: &[u8], identity: &str) -> Vec<u8> {
        keys::identity_hash(key, identity).or_raise().to_vec()
    }

    #[pg_extern(immutable, strict, parallel_safe)]
    fn anonymous_hash(key: &[u8], anonymous_id: &str) -> Vec<u8> {
        keys::anonymous_hash(key, anonymous_id).or_raise().to_vec()
    }

    /// `argument` names the caller's parameter in the error, e.g. "member".
    #[pg_extern(immutable, strict, parallel_safe, name = "normalize_identity")]
    fn normalize_identity_nfc(argument: &str, value: &str) -> String {
        identity::normalize_identity(argument, value).or_raise()
    }

    /// The 0.1.0 rule, which the SQL of a database not yet updated calls.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    fn normalize_identity(argument: &str, value: &str) -> String {
        identity::normalize_identity_0_1(argument, value).or_raise()
    }

    /// What the normaliser refuses in `value`, as {SQLSTATE, message}, or
    /// NULL; raises nothing (audience_internal.identity_problem wraps it).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn identity_check(argument: &str, value: &str, anonymous: bool) -> Option<Vec<String>> {
        identity::problem(argument, value, anonymous).map(|e| vec![e.code().to_string(), e.to_string()])
    }

    /// A JSON time in RFC 3339 shape, or NULL for any other text, which
    /// only PostgreSQL's parser may judge (audience_internal.as_time).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn rfc3339_time(text: &str) -> Option<TimestampWithTimeZone> {
        rfc3339::parse(text).and_then(|micros| TimestampWithTimeZone::try_from(micros).ok())
    }

    #[pg_extern(immutable, strict, parallel_safe)]
    fn normalize_anonymous_id(argument: &str, value: &str) -> String {
        identity::normalize_anonymous_id(argument, value).or_raise()
    }

    /// `scope` narrows the pseudonym to a month and/or a requester ("" for none).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_pseudonym(key: &[u8], viewer_hash: &[u8], scope: &str) -> String {
        pseudonym::pseudonym(key, viewer_hash, scope.as_bytes()).or_raise()
    }

    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_ref(key: &[u8], viewer_hash: &[u8], identified: bool, scope: &str) -> String {
        pseudonym::viewer_ref(key, viewer_hash, identified, scope.as_bytes()).or_raise()
    }

    /// The set of these viewer ids: the viewers of a day rollup row
    /// (sql/rollups.sql).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set(viewer_ids: Array<i64>) -> Vec<u8> {
        viewer_set::of_ids(viewer_ids.iter().flatten()).or_raise()
    }

    /// The union of these viewer sets (NULLs are no viewers).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set_union(sets: Array<&[u8]>) -> Vec<u8> {
        viewer_set::union(sets.iter().flatten()).or_raise()
    }

    /// How many viewers the union of these sets holds: a window's distinct
    /// viewers, without writing the union out.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set_count(sets: Array<&[u8]>) -> i64 {
        viewer_set::union_count(sets.iter().flatten()).or_raise()
    }

    /// The union of a month row's kept viewer set and the one a fold adds,
    /// with its size: the month's distinct viewers (sql/rollups.sql), kept
    /// without a row per viewer and month.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set_merge(
        kept: &[u8],
        added: &[u8],
    ) -> TableIterator<'static, (name!(viewers, Vec<u8>), name!(viewer_count, i64))> {
        TableIterator::once(viewer_set::merge(kept, added).or_raise())
    }

    /// The set without one viewer: erasure (audience.forget_viewer).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set_without(set: &[u8], viewer_id: i64) -> Vec<u8> {
        viewer_set::without(set, viewer_id).or_raise()
    }

    /// The ids of a set, smallest first: for checks and tests.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_set_ids(set: &[u8]) -> Vec<i64> {
        viewer_set::ids(set).or_raise()
    }

    /// The microseconds from `start` to `end`: what an ended session adds to
    /// session time (sql/rollups.sql, session_micros). The same as
    /// `extract(epoch FROM end - start) * 1000000`, without the numeric
    /// arithmetic that made it the largest cost of reading a window's raw
    /// events.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn micros_between(start: TimestampWithTimeZone, end: TimestampWithTimeZone) -> i64 {
        pg_sys::TimestampTz::from(end)
            .checked_sub(pg_sys::TimestampTz::from(start))
            .unwrap_or_else(|| AudienceError::invalid("ended_at", "is too far from the start").raise())
    }

    /// The counters of a workspace day's apps, packed (sql/rollups.sql):
    /// four arrays of one length, an entry per app.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn app_counts(app_ids: Array<i64>, sessions: Array<i64>, visits: Array<i64>, session_micros: Array<i64>) -> Vec<u8> {
        let n = app_ids.len();
        if sessions.len() != n || visits.len() != n || session_micros.len() != n {
            AudienceError::invalid("app_ids", "must have one entry per counter").raise();
        }
        let counts = sessions.iter().zip(visits.iter()).zip(session_micros.iter()).map(|((s, v), m)| {
            packed_counts::Counts { sessions: s.unwrap_or(0), visits: v.unwrap_or(0), session_micros: m.unwrap_or(0), ..Default::default() }
        });
        packed_counts::of(app_ids.iter().map(|id| id.unwrap_or_default()).zip(counts))
    }

    /// The counters of a workspace day's viewers, packed (sql/rollups.sql):
    /// six arrays of one length, an entry per viewer and kind of view
    /// (identifiable or not); a NULL time is no view (end_session).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_counts(
        viewer_ids: Array<i64>,
        identifiable: Array<bool>,
        sessions: Array<i64>,
        visits: Array<i64>,
        session_micros: Array<i64>,
        last_viewed_at: Array<TimestampWithTimeZone>,
    ) -> Vec<u8> {
        let n = viewer_ids.len();
        if [identifiable.len(), sessions.len(), visits.len(), session_micros.len(), last_viewed_at.len()].iter().any(|&l| l != n) {
            AudienceError::invalid("viewer_ids", "must have one entry per counter").raise();
        }
        let keys = viewer_ids.iter().zip(identifiable.iter()).map(|(id, i)| {
            packed_counts::viewer_key(id.unwrap_or_default(), i.unwrap_or(false))
        });
        let counts = sessions.iter().zip(visits.iter()).zip(session_micros.iter()).zip(last_viewed_at.iter()).map(
            |(((s, v), m), at)| packed_counts::Counts {
                sessions: s.unwrap_or(0),
                visits: v.unwrap_or(0),
                session_micros: m.unwrap_or(0),
                last_viewed_at: at.map_or(packed_counts::NO_VIEW_TIME, pg_sys::TimestampTz::from),
            },
        );
        packed_counts::of(keys.zip(counts))
    }

    /// The sum of packed counters, packed: a month's from its days'
    /// values (close_months). NULL for no values.
    #[pg_extern(immutable, parallel_safe)]
    fn packed_counts_sum(packed: Option<Array<&[u8]>>) -> Option<Vec<u8>> {
        packed.map(|p| packed_counts::total(p.iter().flatten()).or_raise())
    }

    /// Packed counters (of apps, or of viewers) plus others: the fold and
    /// end_session.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn packed_counts_add(kept: &[u8], added: &[u8]) -> Vec<u8> {
        packed_counts::combine(kept, added, packed_counts::Sign::Add).or_raise()
    }

    /// Erasure: a key whose views reach zero leaves the value.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn packed_counts_subtract(kept: &[u8], gone: &[u8]) -> Vec<u8> {
        packed_counts::combine(kept, gone, packed_counts::Sign::TakeOff).or_raise()
    }

    /// Viewer counters without one viewer's: erasure (audience.forget_viewer).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_counts_without(counts: &[u8], viewer_id: i64) -> Vec<u8> {
        packed_counts::without_viewer(counts, viewer_id).or_raise()
    }

    /// One viewer's sessions, visits and ended session time in packed viewer
    /// counters, NULL when it has none: erasure of retired days
    /// (audience.forget_viewer).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn viewer_counts_of(counts: &[u8], viewer_id: i64) -> Option<Vec<i64>> {
        packed_counts::viewer_share(counts, viewer_id)
            .or_raise()
            .map(|c| vec![c.sessions, c.visits, c.session_micros])
    }

    /// The sums of packed counters per app, less those of `minus` (the days
    /// of a month before a window, taken off the month's sums), for the
    /// apps in `apps` (every app when NULL).
    #[pg_extern(immutable, parallel_safe)]
    fn app_counts_sum(
        packed: Option<Array<&[u8]>>,
        minus: Option<Array<&[u8]>>,
        apps: Option<Array<i64>>,
    ) -> TableIterator<'static, (name!(app_id, i64), name!(sessions, i64), name!(visits, i64), name!(session_micros, i64))>
    {
        let only: Option<Vec<i64>> = apps.map(|a| a.iter().flatten().collect());
        let minus: Vec<&[u8]> = minus.as_ref().map(|m| m.iter().flatten().collect()).unwrap_or_default();
        let sums = match packed {
            Some(packed) => packed_counts::sum_less(packed.iter().flatten(), minus, only.as_deref()).or_raise(),
            None => Vec::new(),
        };
        TableIterator::new(sums.into_iter().map(|(app_id, c)| (app_id, c.sessions, c.visits, c.session_micros)))
    }

    /// The `max_viewers` viewers with the most views in these packed
    /// values of viewer counters, a viewer's views summed per label (see
    /// packed_counts::top_viewers). The labelling rule stays in SQL
    /// (sql/labels.sql): for each value, four entries of `identified` and
    /// `label_at` say how its views are labelled, by a member or not, then
    /// identifiable or not (packed_counts::Classes::index). A value whose
    /// `take_off` is true is taken off the sums (a day of a month before a
    /// window). `members` are the viewer ids of the workspace's members now.
    #[pg_extern(immutable, parallel_safe)]
    fn viewer_counts_top(
        packed: Option<Array<&[u8]>>,
        take_off: Option<Array<bool>>,
        identified: Option<Array<bool>>,
        label_at: Option<Array<TimestampWithTimeZone>>,
        members: Option<Array<i64>>,
        max_viewers: i32,
    ) -> TableIterator<
        'static,
        (
            name!(viewer_id, i64),
            name!(identified, bool),
            name!(label_at, Option<TimestampWithTimeZone>),
            name!(sessions, i64),
            name!(visits, i64),
            name!(session_micros, i64),
            name!(last_viewed_at, Option<TimestampWithTimeZone>),
        ),
    > {
        let values: Vec<Option<&[u8]>> = packed.as_ref().map(|p| p.iter().collect()).unwrap_or_default();
        let take_off: Vec<Option<bool>> = take_off.map(|a| a.iter().collect()).unwrap_or_default();
        if take_off.len() != values.len() {
            AudienceError::invalid("take_off", "must have one entry per packed value").raise();
        }
        let identified: Vec<Option<bool>> = identified.map(|a| a.iter().collect()).unwrap_or_default();
        let label_at: Vec<Option<i64>> =
            label_at.map(|a| a.iter().map(|t| t.map(pg_sys::TimestampTz::from)).collect()).unwrap_or_default();
        if identified.len() != 4 * values.len() {
            AudienceError::invalid("identified", "must have four entries per packed value").raise();
        }
        if label_at.len() != 4 * values.len() {
            AudienceError::invalid("label_at", "must have four entries per packed value").raise();
        }
        let classes: Vec<packed_counts::Classes> = (0..values.len())
            .map(|v| {
                packed_counts::Classes(std::array::from_fn(|k| packed_counts::Class {
                    identified: identified[4 * v + k].unwrap_or(false),
                    label_at: label_at[4 * v + k],
                }))
            })
            .collect();
        let members: Vec<i64> = members.map(|a| a.iter().flatten().collect()).unwrap_or_default();
        let sign = |t: &Option<bool>| if *t == Some(true) { packed_counts::Sign::TakeOff } else { packed_counts::Sign::Add };
        let rows = packed_counts::top_viewers(
            values.iter().zip(classes.iter()).zip(take_off.iter()).filter_map(|((v, c), t)| v.map(|v| (v, c, sign(t)))),
            &members,
            usize::try_from(max_viewers).unwrap_or(0),
        )
        .or_raise();
        let time = |t: i64| TimestampWithTimeZone::try_from(t).ok();
        TableIterator::new(rows.into_iter().map(move |r| {
            (
                r.viewer_id,
                r.class.identified,
                r.class.label_at.and_then(time),
                r.counts.sessions,
                r.counts.visits,
                r.counts.session_micros,
                time(r.counts.last_viewed_at),
            )
        }))
    }

    /// The database login of this session (session_user, which neither SET
    /// ROLE nor a SECURITY DEFINER function changes): the recorder of the
    /// events it ingests. A function so that it costs nothing per row of a
    /// bulk insert.
    #[pg_extern(stable, parallel_safe)]
    fn session_login() -> pg_sys::Oid {
        // SAFETY: plain read of backend state.
        unsafe { pg_sys::GetSessionUserId() }
    }

    /// Minted by the SECURITY INVOKER wrappers in schema audience, as the
    /// caller. Parallel restricted, like everything reading backend state a
    /// parallel worker does not share.
    #[pg_extern(stable, parallel_restricted)]
    fn ticket() -> Vec<u8> {
        requester::ticket()
    }

    /// Called first by every SECURITY DEFINER read function.
    #[pg_extern(volatile, parallel_restricted)]
    fn enter(ticket: Option<&[u8]>) {
        requester::enter(ticket.unwrap_or_default()).or_raise();
    }

    /// The caller's role, as the last `enter` of this transaction recorded it.
    #[pg_extern(stable, parallel_restricted)]
    fn caller_role() -> Option<pg_sys::Oid> {
        requester::caller_role()
    }

    /// The identity a request token verified in this transaction names.
    #[pg_extern(stable, parallel_restricted)]
    fn token_subject() -> Option<String> {
        requester::get().map(|r| r.subject)
    }

    /// The one workspace the token is limited to, if it names one.
    #[pg_extern(stable, parallel_restricted)]
    fn token_workspace() -> Option<String> {
        requester::get().and_then(|r| r.workspace)
    }

    /// Verifies `token` against `secret`, spends it (audience_internal.spend_token
    /// refuses a token already used) and makes its subject the requester for
    /// the rest of the transaction. Any earlier requester is dropped first, so
    /// a refused token leaves nobody.
    #[pg_extern(volatile, parallel_unsafe, name = "accept_token")]
    fn accept_token_once(token: Option<&str>, secret: Option<&[u8]>) -> String {
        requester::clear();
        let (claims, id) = token::verify_once(token.unwrap_or(""), configured(secret)).or_raise();
        let subject = token_subject_of(&claims, identity::normalize_identity);
        let spent = Spi::get_one_with_args::<bool>(
            "SELECT audience_internal.spend_token($1, $2)",
            &[token::spent_id(&id).into(), i64::try_from(claims.expires).unwrap_or(i64::MAX).into()],
        );
        if !matches!(spent, Ok(Some(true))) {
            AudienceError::InvalidToken { reason: "token has already been used" }.raise()
        }
        requester::set(requester::TokenRequester { subject: subject.clone(), workspace: claims.workspace });
        subject
    }

    /// As released in 0.1.0 (a token good until it expires), which the SQL
    /// of a database not yet updated calls.
    #[pg_extern(volatile, parallel_unsafe, sql = false)]
    fn accept_token(token: Option<&str>, secret: Option<&[u8]>) -> String {
        requester::clear();
        let claims = token::verify(token.unwrap_or(""), configured(secret)).or_raise();
        let subject = token_subject_of(&claims, identity::normalize_identity_0_1);
        requester::set(requester::TokenRequester { subject: subject.clone(), workspace: claims.workspace });
        subject
    }

    fn configured(secret: Option<&[u8]>) -> &[u8] {
        secret.unwrap_or_else(|| {
            AudienceError::NotConfigured { what: "no token secret is set (audience.set_token_secret)" }.raise()
        })
    }

    fn token_subject_of(
        claims: &token::Claims,
        normalize: fn(&str, &str) -> Result<String, AudienceError>,
    ) -> String {
        normalize("token", &claims.sub)
            .map_err(|_| AudienceError::InvalidToken { reason: "claim sub is not a valid identity" })
            .or_raise()
    }
}

/// What users call from Rust, in schema audience (created by sql/bootstrap.sql).
#[pg_schema]
mod audience {
    use crate::{error, relative_time};
    use pgrx::prelude::*;

    /// "just now", "5 minutes ago", "yesterday", ... for `at` as seen from `now`.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn relative_time(at: TimestampWithTimeZone, now: default!(TimestampWithTimeZone, "now()")) -> String {
        if !at.is_finite() || !now.is_finite() {
            error::AudienceError::invalid("at", "must be a finite time").raise();
        }
        relative_time::between(at.into_inner(), now.into_inner())
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod test_sql;
#[cfg(any(test, feature = "pg_test"))]
mod tests;
#[cfg(any(test, feature = "pg_test"))]
mod tests_bulk;
#[cfg(any(test, feature = "pg_test"))]
mod tests_delete;
#[cfg(any(test, feature = "pg_test"))]
mod tests_requester;
#[cfg(any(test, feature = "pg_test"))]
mod tests_retire;
#[cfg(any(test, feature = "pg_test"))]
mod tests_usage;
#[cfg(any(test, feature = "pg_test"))]
mod tests_usage_scope;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

//! The secrets — each workspace's keys and the platform's token secret —
//! are readable through no catalog, setting or statistic by anyone but the
//! operator: not by a reader, and not by a BI analyst holding
//! pg_read_all_data.

use crate::fixture::{Fixture, TOKEN_SECRET};
use crate::oracle::ACTORS;
use crate::probes::{leaked, report, sqlstate};
use pg_audience_integration::attempt;
use postgres::Client;
use std::collections::BTreeSet;

/// Every relation of pg_catalog and information_schema the caller may
/// read, as text, with what a function or view definition shows and every
/// setting: where a key or the secret would surface if it were in a catalog.
fn catalog_text(client: &mut Client) -> Vec<(String, String)> {
    let mut tx = client.transaction().unwrap();
    let relations: Vec<String> = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'v', 'm', 'p')
                AND has_table_privilege(c.oid, 'SELECT')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        relations.len() > 100,
        "too few catalogs readable: {}",
        relations.len()
    );
    let mut out = Vec::new();
    for rel in relations {
        if let Ok(rows) = attempt(
            &mut tx,
            &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {rel} t"),
        ) {
            out.push((rel, rows.join("\n")));
        }
    }
    // A sweep that could read (almost) nothing would find nothing.
    assert!(out.len() > 100, "too few catalogs read: {}", out.len());
    for (what, sql) in [
        ("pg_get_functiondef", "SELECT string_agg(pg_get_functiondef(p.oid), E'\\n') FROM pg_catalog.pg_proc p
                                WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prokind IN ('f', 'p')"),
        ("pg_get_viewdef", "SELECT string_agg(pg_get_viewdef(c.oid), E'\\n') FROM pg_catalog.pg_class c WHERE c.relkind = 'v'"),
        ("SHOW ALL", "SELECT string_agg(name || '=' || setting, E'\\n') FROM pg_catalog.pg_show_all_settings()"),
        ("extension config", "SELECT string_agg(e::text, E'\\n') FROM pg_catalog.pg_extension e"),
    ] {
        let rows = attempt(&mut tx, sql).unwrap_or_else(|e| panic!("{what}: {e}"));
        out.push((what.to_string(), rows.join("\n")));
    }
    out
}

/// Where any needle is found: (relation, needle).
fn find_needles(
    catalogs: &[(String, String)],
    needles: &[(String, String)],
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (rel, text) in catalogs {
        let text = text.to_lowercase();
        for (name, needle) in needles {
            if text.contains(&needle.to_lowercase()) {
                found.push((rel.clone(), name.clone()));
            }
        }
    }
    found
}

/// The workspace keys and the token secret are readable through no catalog
/// (pg_proc, pg_class, pg_extension, pg_settings, pg_stats, pg_stat_activity
/// and every other one the actor may read): not even while the operator's
/// session that set the secret, with the secret in its query text, is open.
#[test]
fn keys_and_token_secret_are_in_no_catalog() {
    let mut fx = Fixture::new("keys");
    fx.op.batch_execute("ANALYZE").unwrap();
    // The operator sets the secret from a session that stays open: its query
    // text, secret included, is in pg_stat_activity.
    let mut holder = fx.db.connect();
    holder
        .execute("SELECT audience.set_token_secret($1)", &[&TOKEN_SECRET])
        .unwrap();
    holder
        .batch_execute(&format!(
            "SELECT audience.set_token_secret('{TOKEN_SECRET}')"
        ))
        .unwrap();
    let secret_hex: String = TOKEN_SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    let mut needles: Vec<(String, String)> = vec![
        ("token secret".into(), TOKEN_SECRET.into()),
        ("token secret (hex)".into(), secret_hex),
    ];
    for (i, key) in fx.key_hex.iter().enumerate() {
        needles.push((format!("key {i} (hex)"), key.clone()));
        // Half a key would be as bad.
        needles.push((
            format!("key {i} (first 16 bytes, hex)"),
            key[..32].to_string(),
        ));
        needles.push((
            format!("key {i} (last 16 bytes, hex)"),
            key[32..].to_string(),
        ));
    }
    // The sweep finds the secret where the operator may look (their own query).
    let operator_found = find_needles(&catalog_text(&mut fx.op), &needles);
    assert!(
        operator_found
            .iter()
            .any(|(rel, n)| rel == "pg_catalog.pg_stat_activity" && n == "token secret"),
        "the operator's sweep should find the secret in pg_stat_activity: {operator_found:?}"
    );

    let mut failures = Vec::new();
    let mut logins = BTreeSet::new();
    for spec in ACTORS {
        // The catalogs answer by role, not by token: one sweep per login.
        if !logins.insert(spec.login) {
            continue;
        }
        let mut s = fx.session(spec);
        let who = s.label();
        let mut catalogs = catalog_text(&mut s.client);
        if spec.login == "analyst" {
            // See pg_read_all_data_reads_no_secret_from_statistics below.
            catalogs.retain(|(rel, _)| !rel.starts_with("pg_catalog.pg_statistic"));
        }
        let found = find_needles(&catalogs, &needles);
        if !found.is_empty() {
            failures.push(format!("{who} reads {found:?}"));
        }
        // And by name, the settings that could hold them.
        for name in [
            "audience.token_secret",
            "audience.secret",
            "pg_audience.secret",
            "audience.key",
        ] {
            match s
                .client
                .query_one("SELECT current_setting($1, true)", &[&name])
            {
                Ok(row) => {
                    if let Some(v) = row.get::<_, Option<String>>(0) {
                        failures.push(format!("{who}: setting {name} exists: {v:?}"));
                    }
                }
                Err(e) => failures.push(format!("{who}: reading setting {name}: {e}")),
            }
        }
    }
    drop(holder);
    report(failures);
}

/// A role granted pg_read_all_data — what platforms commonly give a BI
/// tool's analyst role — passes every privilege check on tables, and
/// row-level security keeps it from the rows of audience_internal; but
/// pg_statistic is a catalog, without row-level security, and ANALYZE
/// copies column values into it: histogram bounds and most common values of
/// workspace_keys (the keys), token_secrets, members, viewers and app_access
/// (identities). The keys must be readable by no analytics role.
#[test]
fn pg_read_all_data_reads_no_secret_from_statistics() {
    let mut fx = Fixture::new("pgstatistic");
    fx.op.batch_execute("ANALYZE").unwrap();
    let analyst = ACTORS.iter().find(|s| s.login == "analyst").unwrap();
    let hidden = fx.hidden_strings(analyst);
    let mut s = fx.session(analyst);
    let mut failures = Vec::new();
    for table in ["pg_statistic", "pg_statistic_ext_data"] {
        match s.client.query(
            &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM pg_catalog.{table} t"),
            &[],
        ) {
            Err(e) if sqlstate(&e) == "42501" => {}
            Err(e) => failures.push(format!("{table}: {e}")),
            Ok(rows) => {
                let text: String = rows[0].get(0);
                let l = leaked(&text, &hidden);
                if !l.is_empty() {
                    failures.push(format!(
                        "{table} shows {} hidden values, e.g. {:?}",
                        l.len(),
                        &l[..l.len().min(8)]
                    ));
                }
            }
        }
    }
    report(failures);
}

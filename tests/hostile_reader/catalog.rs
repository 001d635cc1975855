//! The catalog audit: the settings every door above relies on, read from
//! the catalog of a fresh install — row-level security, the capability
//! roles, SECURITY DEFINER functions, privileges, security barriers.

use crate::probes::report;
use pg_audience_integration::TestDb;
use postgres::Client;

/// The first column of every row of `sql`: here, each a finding.
fn rows(op: &mut Client, sql: &str) -> Vec<String> {
    op.query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every table has row-level security enabled and forced; no capability
/// role is SUPERUSER, BYPASSRLS or LOGIN; every SECURITY DEFINER function
/// pins a search_path that ends with pg_temp and is not executable by
/// PUBLIC; no function is LEAKPROOF; no capability role nor PUBLIC holds any
/// privilege on a base table, sequence or the internal schema, nor EXECUTE
/// on an internal function; every view is a security barrier.
#[test]
fn catalog_audit() {
    let (_db, mut op) = TestDb::with_extension("it_hostile_audit");
    let mut failures = Vec::new();
    failures.extend(tables_force_row_security(&mut op));
    failures.extend(capability_roles_are_weak(&mut op));
    failures.extend(definer_functions_are_pinned_and_private(&mut op));
    for role in [
        "public",
        "audience_reader",
        "audience_ingest",
        "audience_manager",
    ] {
        failures.extend(privileges_held_by(&mut op, role));
    }
    failures.extend(rows(
        &mut op,
        "SELECT format('view %s is not a security barrier (reloptions %s)', c.oid::regclass, c.reloptions)
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind = 'v'
            AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)",
    ));
    report(failures);
}

fn tables_force_row_security(op: &mut Client) -> Vec<String> {
    let tables = rows(
        op,
        "SELECT c.relname::text FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')",
    );
    assert!(
        tables.len() >= 10,
        "too few tables in audience_internal: {tables:?}"
    );
    rows(
        op,
        "SELECT format('table %s: relrowsecurity %s, relforcerowsecurity %s', c.relname, c.relrowsecurity, c.relforcerowsecurity)
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p')
            AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
}

/// The capability roles, and any other role named like one, hold no
/// attribute that would pass a privilege or row-level security check, nor
/// are they members of a role that does or that reads everything.
fn capability_roles_are_weak(op: &mut Client) -> Vec<String> {
    let capability_roles = rows(
        op,
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname IN ('audience_manager', 'audience_ingest', 'audience_reader')",
    );
    assert_eq!(
        capability_roles.len(),
        3,
        "capability roles: {capability_roles:?}"
    );
    let mut failures = rows(
        op,
        "SELECT format('role %s: super %s, bypassrls %s, login %s, createrole %s, createdb %s, replication %s',
                       rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication)
           FROM pg_catalog.pg_roles
          WHERE (rolname IN ('audience_manager', 'audience_ingest', 'audience_reader') OR rolname LIKE 'audience\\_%')
            AND (rolsuper OR rolbypassrls OR rolcanlogin OR rolcreaterole OR rolcreatedb OR rolreplication)",
    );
    failures.extend(rows(
        op,
        "SELECT format('role %s is a member of %s', m.rolname, r.rolname)
           FROM pg_catalog.pg_roles m, pg_catalog.pg_roles r
          WHERE m.rolname IN ('audience_manager', 'audience_ingest', 'audience_reader') AND m.oid <> r.oid
            AND pg_has_role(m.oid, r.oid, 'MEMBER')
            AND (r.rolsuper OR r.rolbypassrls OR r.rolname IN ('pg_read_all_data', 'pg_write_all_data', 'pg_read_all_stats', 'pg_monitor'))",
    ));
    failures
}

/// Every SECURITY DEFINER function pins a search_path with pg_temp last and
/// is not executable by PUBLIC; no function is LEAKPROOF; of schema
/// audience, only relative_time is for everyone.
fn definer_functions_are_pinned_and_private(op: &mut Client) -> Vec<String> {
    let definers = rows(
        op,
        "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef",
    );
    assert!(
        definers.len() >= 20,
        "too few SECURITY DEFINER functions: {definers:?}"
    );
    let mut failures = rows(
        op,
        "SELECT format('SECURITY DEFINER %s: proconfig %s', p.oid::regprocedure, p.proconfig)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef
            AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                             WHERE c LIKE 'search\\_path=%'
                               -- pg_temp last: otherwise it is searched first, and a caller's temp objects win.
                               AND regexp_replace(c, '\\s', '', 'g') ~ ',pg_temp$')",
    );
    failures.extend(rows(
        op,
        "SELECT format('SECURITY DEFINER %s is executable by PUBLIC', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.prosecdef
            AND has_function_privilege('public', p.oid, 'EXECUTE')",
    ));
    failures.extend(rows(
        op,
        "SELECT format('%s is LEAKPROOF: it would be run below security barriers', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace) AND p.proleakproof",
    ));
    failures.extend(rows(
        op,
        "SELECT format('%s is executable by PUBLIC', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace IN ('audience'::regnamespace, 'audience_internal'::regnamespace)
            AND has_function_privilege('public', p.oid, 'EXECUTE') AND p.proname <> 'relative_time'",
    ));
    failures
}

/// What `role` holds of the internals: nothing on a table, view, staging
/// table (but INSERT for the ingest role), sequence, the internal schema or
/// an internal function, and no CREATE in schema audience. Readers reach
/// the definer functions behind the read functions directly (they are
/// called from SECURITY INVOKER wrappers), and those answer only to a
/// ticket.
fn privileges_held_by(op: &mut Client, role: &str) -> Vec<String> {
    let reads = matches!(role, "audience_reader" | "audience_manager");
    let sql = format!(
        "SELECT format('{role} holds %s on %s', priv, c.oid::regclass)
           FROM pg_catalog.pg_class c,
                unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND has_table_privilege('{role}', c.oid, priv)
         UNION ALL
         SELECT format('{role} holds %s on staging table %s', priv, c.oid::regclass)
           FROM pg_catalog.pg_class c,
                unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
          WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('r', 'p')
            AND has_table_privilege('{role}', c.oid, priv)
            AND NOT ('{role}' = 'audience_ingest' AND priv = 'INSERT')
         UNION ALL
         SELECT format('{role} holds %s on sequence %s', priv, c.oid::regclass)
           FROM pg_catalog.pg_class c, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) priv
          WHERE c.relnamespace = 'audience_internal'::regnamespace AND c.relkind = 'S'
            AND has_sequence_privilege('{role}', c.oid, priv)
         UNION ALL
         SELECT format('{role} holds %s on schema audience_internal', priv)
           FROM unnest(ARRAY['USAGE', 'CREATE']) priv
          WHERE has_schema_privilege('{role}', 'audience_internal', priv) AND NOT ({reads} AND priv = 'USAGE')
         UNION ALL
         SELECT format('{role} may execute %s', p.oid::regprocedure)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace = 'audience_internal'::regnamespace
            AND has_function_privilege('{role}', p.oid, 'EXECUTE')
            AND NOT ({reads} AND (p.proname = 'ticket' AND p.pronargs = 0
                                  OR p.prosecdef AND p.proargtypes[0] = 'bytea'::regtype AND p.proargnames[1] = 'ticket'))
         UNION ALL
         SELECT '{role} may CREATE in schema audience' WHERE has_schema_privilege('{role}', 'audience', 'CREATE')"
    );
    rows(op, &sql)
}

//! The catalog of the extension as text: every object that is a member of
//! pg_audience, with what defines it (definitions, columns, constraints,
//! indexes, policies, triggers, privileges, comments), so that an upgraded
//! database and a fresh install can be compared object by object. Nothing
//! here names an OID, so two databases describe alike. Privileges are sorted
//! and a default ACL is spelled out, so that only what they grant counts.

use crate::diff::Lines;
use postgres::Client;

const MEMBERS: &str = "WITH members AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pg_audience' AND d.deptype = 'e')";

/// ACL `acl` of an object of `kind` (acldefault's letter, an SQL expression) owned by `owner`, sorted.
fn acl(acl: &str, kind: &str, owner: &str) -> String {
    format!(
        "(SELECT string_agg(a::text, ' ' ORDER BY a::text)
            FROM unnest(coalesce({acl}, acldefault({kind}, {owner}))) a)"
    )
}

/// Queries returning (object, item, text), one per kind of object.
fn queries() -> Vec<String> {
    let rel =
        "FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid";
    let obj = "pg_describe_object('pg_class'::regclass, c.oid, 0)";
    vec![
        "SELECT pg_describe_object(classid, objid, objsubid), 'member', 'extension member' FROM members".into(),
        format!(
            "SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0), x.item, x.body
               FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid,
                    LATERAL (VALUES
                      ('definition', CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END),
                      ('owner', p.proowner::regrole::text),
                      ('acl', {}),
                      ('comment', coalesce(obj_description(p.oid, 'pg_proc'), '(none)'))) x(item, body)",
            acl("p.proacl", "'f'", "p.proowner")
        ),
        format!(
            "SELECT {obj}, x.item, x.body {rel},
                    LATERAL (VALUES
                      ('kind', format('relkind %s, persistence %s, replica identity %s',
                                      c.relkind, c.relpersistence, c.relreplident)),
                      ('owner', c.relowner::regrole::text),
                      ('acl', {}),
                      ('options', coalesce((SELECT string_agg(o, ', ' ORDER BY o) FROM unnest(c.reloptions) o), '(none)')),
                      ('row security', format('enabled %s, forced %s', c.relrowsecurity, c.relforcerowsecurity)),
                      ('comment', coalesce(obj_description(c.oid, 'pg_class'), '(none)')),
                      ('view definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END)
                    ) x(item, body)
              WHERE x.body IS NOT NULL",
            acl("c.relacl", "CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\"", "c.relowner")
        ),
        format!(
            "SELECT {obj}, 'column ' || a.attname,
                    format('position %s, %s%s%s%s%s, statistics %s, acl %s, comment %s',
                           row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                           format_type(a.atttypid, a.atttypmod),
                           CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                           coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                           CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
                             || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END,
                           CASE WHEN a.attcollation <> t.typcollation THEN ' collate ' || a.attcollation::regcollation ELSE '' END,
                           a.attstattarget,
                           coalesce((SELECT string_agg(x::text, ' ' ORDER BY x::text) FROM unnest(a.attacl) x), '(none)'),
                           coalesce(col_description(c.oid, a.attnum), '(none)'))
             {rel}
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum"
        ),
        format!(
            "SELECT {obj}, 'constraint ' || k.conname,
                    pg_get_constraintdef(k.oid) || coalesce(' -- ' || obj_description(k.oid, 'pg_constraint'), '')
             {rel} JOIN pg_constraint k ON k.conrelid = c.oid"
        ),
        format!(
            "SELECT {obj}, 'index ' || ic.relname,
                    pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisclustered THEN ' (clustered)' ELSE '' END
                      || coalesce(' -- ' || obj_description(i.indexrelid, 'pg_class'), '')
             {rel} JOIN pg_index i ON i.indrelid = c.oid JOIN pg_class ic ON ic.oid = i.indexrelid"
        ),
        format!(
            "SELECT {obj}, 'policy ' || p.policyname,
                    format('%s for %s to %s using (%s) with check (%s)', p.permissive, p.cmd,
                           (SELECT string_agg(r, ', ' ORDER BY r) FROM unnest(p.roles) r), p.qual, p.with_check)
             {rel} JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname"
        ),
        format!(
            "SELECT {obj}, 'trigger ' || g.tgname,
                    pg_get_triggerdef(g.oid) || format(' (enabled %s)', g.tgenabled)
                      || coalesce(' -- ' || obj_description(g.oid, 'pg_trigger'), '')
             {rel} JOIN pg_trigger g ON g.tgrelid = c.oid AND NOT g.tgisinternal"
        ),
        format!(
            "SELECT {obj}, 'rule ' || r.rulename, pg_get_ruledef(r.oid)
             {rel} JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename <> '_RETURN'"
        ),
        format!(
            "SELECT {obj}, 'sequence',
                    format('%s start %s increment %s min %s max %s cache %s cycle %s', s.seqtypid::regtype,
                           s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
                      || coalesce(' owned by ' || (SELECT d.refobjid::regclass::text || '.' || a.attname
                                                     FROM pg_depend d JOIN pg_attribute a
                                                       ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                      AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'), '')
             {rel} JOIN pg_sequence s ON s.seqrelid = c.oid"
        ),
        format!(
            "SELECT pg_describe_object('pg_namespace'::regclass, n.oid, 0), x.item, x.body
               FROM pg_namespace n,
                    LATERAL (VALUES ('owner', n.nspowner::regrole::text), ('acl', {}),
                                    ('comment', coalesce(obj_description(n.oid, 'pg_namespace'), '(none)'))) x(item, body)
              WHERE n.oid IN (SELECT objid FROM members WHERE classid = 'pg_namespace'::regclass)
                 OR n.oid = (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_audience')",
            acl("n.nspacl", "'n'", "n.nspowner")
        ),
        format!(
            "SELECT pg_describe_object('pg_type'::regclass, t.oid, 0), x.item, x.body
               FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid,
                    LATERAL (VALUES
                      ('type', format('typtype %s', t.typtype)
                         || coalesce(' labels ' || (SELECT string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
                                                      FROM pg_enum e WHERE e.enumtypid = t.oid), '')
                         || CASE WHEN t.typtype = 'd' THEN format(' over %s not null %s default %s', format_type(t.typbasetype, t.typtypmod),
                                                                  t.typnotnull, t.typdefault) ELSE '' END
                         || coalesce(' constraints ' || (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), '; ' ORDER BY k.conname)
                                                           FROM pg_constraint k WHERE k.contypid = t.oid), '')
                         || coalesce(' attributes ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                                          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')),
                      ('owner', t.typowner::regrole::text),
                      ('acl', {}),
                      ('comment', coalesce(obj_description(t.oid, 'pg_type'), '(none)'))) x(item, body)",
            acl("t.typacl", "'T'", "t.typowner")
        ),
        "SELECT 'extension pg_audience', 'config ' || cfg.rel::regclass::text, 'condition ' || quote_literal(cfg.cond)
           FROM pg_extension e, unnest(e.extconfig, e.extcondition) cfg(rel, cond)
          WHERE e.extname = 'pg_audience'
         UNION ALL
         SELECT 'extension pg_audience', 'schema', format('%s, relocatable %s, version %s',
                                                          e.extnamespace::regnamespace, e.extrelocatable, e.extversion)
           FROM pg_extension e WHERE e.extname = 'pg_audience'"
            .into(),
    ]
}

/// Every member object of pg_audience in the database of `client`, as lines
/// `item: text` by object, in item order (multi-line texts line by line).
pub fn describe(client: &mut Client) -> Lines {
    let mut items: Vec<(String, String, String)> = Vec::new();
    for query in queries() {
        let sql = format!("{MEMBERS} SELECT q.* FROM ({query}) q(obj, item, body)");
        let rows = client.query(&sql, &[]).unwrap_or_else(|e| {
            panic!(
                "describing the catalog: {}\n{sql}",
                crate::capture::error_line(&e)
            )
        });
        items.extend(rows.iter().map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get::<_, Option<String>>(2)
                    .unwrap_or_else(|| "(null)".into()),
            )
        }));
    }
    items.sort();
    let mut lines = Lines::new();
    for (object, item, body) in items {
        let entry = lines.entry(object).or_default();
        entry.extend(body.lines().map(|line| format!("{item}: {line}")));
    }
    lines
}

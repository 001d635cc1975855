//! The extension's surface as the catalog has it — views, internal
//! relations, staging tables, functions — and how to call each function.
//! Read from the database rather than listed here, so that a function or
//! view added later is probed too; checked against the names the product
//! promises, so that a probe which finds nothing to probe fails.

use postgres::Client;
use std::collections::BTreeSet;

/// A view of schema audience and its columns.
pub struct View {
    pub name: String,
    pub columns: Vec<String>,
}

/// A function of schema audience or audience_internal, as the catalog has it.
pub struct Func {
    pub schema: String,
    pub name: String,
    pub kind: String,
    /// Input arguments: (name, type).
    pub args: Vec<(String, String)>,
    pub defaults: usize,
    pub variadic: bool,
    pub reader_may_execute: bool,
    pub returns: String,
}

impl Func {
    pub fn qualified(&self) -> String {
        format!("\"{}\".\"{}\"", self.schema, self.name)
    }

    /// A call with the given argument texts.
    pub fn call(&self, args: &[String]) -> String {
        let mut args = args.to_vec();
        if self.variadic {
            if let Some(last) = args.last_mut() {
                *last = format!("VARIADIC {last}");
            }
        }
        let verb = if self.kind == "p" { "CALL" } else { "SELECT" };
        format!("{verb} {}({})", self.qualified(), args.join(", "))
    }

    /// A call with a plausible non-NULL value for every argument. (Not
    /// NULL: the planner folds a STRICT function with a NULL argument to
    /// NULL without calling it, or checking whether the caller may.)
    pub fn call_with_values(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(_, ty)| match ty.as_str() {
                "anyelement" | "anycompatible" | "anynonarray" => "'x'::text".to_string(),
                "anyarray" | "anycompatiblearray" => "'{}'::text[]".to_string(),
                "text" | "character varying" | "name" => format!("CAST('x' AS {ty})"),
                "bytea" => "'\\x00'::bytea".to_string(),
                "integer" | "bigint" | "smallint" | "numeric" | "oid" => format!("CAST(1 AS {ty})"),
                "boolean" => "true".to_string(),
                "timestamp with time zone" => "now()".to_string(),
                "date" => "current_date".to_string(),
                "interval" => "interval '1 day'".to_string(),
                "jsonb" | "json" => format!("CAST('{{}}' AS {ty})"),
                t if t.ends_with("[]") => format!("CAST('{{}}' AS {t})"),
                t => format!("CAST(NULL AS {t})"),
            })
            .collect();
        self.call(&args)
    }

    /// Whether the function demands a ticket as its first argument: a
    /// definer function that answers for the role the ticket names.
    pub fn takes_ticket(&self) -> bool {
        self.args
            .first()
            .is_some_and(|(n, t)| n == "ticket" && t == "bytea")
    }

    /// A call of a read function with its required arguments only, and
    /// its app if it takes one (optional: `app` empty leaves it out).
    pub fn read_call(&self, workspace: &str, app: &str) -> String {
        let mut required = self.args.len() - self.defaults;
        if let Some(i) = self.args.iter().position(|(n, _)| n == "app") {
            if !app.is_empty() {
                required = required.max(i + 1);
            }
        }
        let mut timestamps = 0;
        let args: Vec<String> = self.args[..required]
            .iter()
            .map(|(name, ty)| match (name.as_str(), ty.as_str()) {
                ("workspace", _) => format!("'{workspace}'"),
                ("app", _) => format!("'{app}'"),
                (_, "integer" | "bigint" | "smallint") => "12".to_string(),
                (_, "timestamp with time zone") => {
                    timestamps += 1;
                    if timestamps == 1 {
                        "now() - interval '120 days'"
                    } else {
                        "now()"
                    }
                    .to_string()
                }
                (_, "boolean") => "true".to_string(),
                (_, "text") => "'x'".to_string(),
                (name, ty) => panic!(
                    "{}: no value to pass for argument {name} {ty}; extend read_call",
                    self.name
                ),
            })
            .collect();
        self.call(&args)
    }

    pub fn takes_app(&self) -> bool {
        self.args.iter().any(|(name, _)| name == "app")
    }

    /// Whether the app may be left out, to ask about the whole workspace.
    pub fn app_optional(&self) -> bool {
        let required = self.args.len() - self.defaults;
        self.args[required..].iter().any(|(name, _)| name == "app")
    }

    /// A call of a ticket-taking definer function with `ticket` (SQL) and
    /// the other arguments aimed at `workspace`/`app`.
    pub fn ticket_call(&self, ticket: &str, workspace: &str, app: &str) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(name, ty)| match (name.as_str(), ty.as_str()) {
                ("ticket", _) => ticket.to_string(),
                ("workspace", _) => format!("'{workspace}'"),
                ("app" | "app_slug", _) => format!("'{app}'"),
                ("since", _) => "now() - interval '30 days'".to_string(),
                ("bucket", _) => "'day'".to_string(),
                (_, "integer" | "bigint" | "smallint") => "12".to_string(),
                (_, "timestamp with time zone") => "now()".to_string(),
                (_, "interval") => "interval '1 second'".to_string(),
                (_, "boolean") => "true".to_string(),
                (_, "text") => "'x'".to_string(),
                (name, ty) => panic!(
                    "{}: no value to pass for argument {name} {ty}; extend ticket_call",
                    self.name
                ),
            })
            .collect();
        format!("SELECT * FROM {}({})", self.qualified(), args.join(", "))
    }
}

pub struct Catalog {
    pub views: Vec<View>,
    /// Tables, sequences and views of audience_internal: (name, relkind).
    pub internal_relations: Vec<(String, String)>,
    /// Tables of the schemas callers name, audience and audience_ingest (the
    /// staging table of the ingest path), qualified.
    pub staging_tables: Vec<String>,
    pub functions: Vec<Func>,
}

impl Catalog {
    pub fn read(op: &mut Client) -> Catalog {
        let views: Vec<View> = op
            .query(
                "SELECT c.relname::text,
                        ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                               ORDER BY a.attnum)
                   FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'audience'::regnamespace AND c.relkind IN ('v', 'm')
                  ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| View {
                name: r.get(0),
                columns: r.get(1),
            })
            .collect();
        let internal_relations = op
            .query(
                "SELECT c.relname::text, c.relkind::text FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = 'audience_internal'::regnamespace
                    AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
                  ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let staging_tables = op
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname IN ('audience', 'audience_ingest') AND c.relkind IN ('r', 'p') ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let functions = op
            .query(
                "SELECT n.nspname::text, p.proname::text, p.prokind::text,
                        ARRAY(SELECT pg_catalog.format_type(t, NULL)
                                FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY i),
                        coalesce(p.proargnames, '{}'),
                        coalesce(p.proargmodes::text[], '{}'),
                        p.pronargdefaults::int,
                        p.provariadic <> 0,
                        has_function_privilege('audience_reader', p.oid, 'EXECUTE'),
                        p.prorettype::regtype::text
                   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname IN ('audience', 'audience_internal') AND p.prokind IN ('f', 'p')
                  ORDER BY 1, 2",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| {
                let types: Vec<String> = r.get(3);
                let names: Vec<String> = r.get(4);
                let modes: Vec<String> = r.get(5);
                // proargnames covers OUT and TABLE columns too when modes are given.
                let input_names: Vec<String> = if modes.is_empty() {
                    names
                } else {
                    names
                        .into_iter()
                        .zip(modes)
                        .filter(|(_, m)| matches!(m.as_str(), "i" | "b" | "v"))
                        .map(|(n, _)| n)
                        .collect()
                };
                let args = types
                    .into_iter()
                    .enumerate()
                    .map(|(i, ty)| (input_names.get(i).cloned().unwrap_or_default(), ty))
                    .collect();
                Func {
                    schema: r.get(0),
                    name: r.get(1),
                    kind: r.get(2),
                    args,
                    defaults: r.get::<_, i32>(6) as usize,
                    variadic: r.get(7),
                    reader_may_execute: r.get(8),
                    returns: r.get(9),
                }
            })
            .collect();
        let catalog = Catalog {
            views,
            internal_relations,
            staging_tables,
            functions,
        };
        catalog.check_promised();
        catalog
    }

    /// The probes mean something only if they cover what the product promises.
    fn check_promised(&self) {
        let catalog = self;
        let names = |pred: &dyn Fn(&Func) -> bool| -> BTreeSet<String> {
            catalog
                .functions
                .iter()
                .filter(|f| pred(f))
                .map(|f| f.name.clone())
                .collect()
        };
        let reads = names(&|f| catalog.is_read(f));
        for read in [
            "workspace_monthly_viewers",
            "app_monthly_viewers",
            "app_total_viewers",
            "recent_viewers",
            "app_sessions",
            "top_apps",
            "top_viewers",
            "usage_over_time",
            "viewer_trend",
            "app_access",
        ] {
            assert!(
                reads.contains(read),
                "read function {read} not found among {reads:?}"
            );
        }
        let denied = names(&|f| f.schema == "audience" && !f.reader_may_execute);
        for f in [
            "create_workspace",
            "create_app",
            "set_app_visibility",
            "add_member",
            "invite_viewer",
            "accept_invite",
            "remove_member",
            "grant_app_access",
            "rotate_pseudonym_key",
            "set_token_secret",
            "forget_viewer",
            "record_view",
            "end_session",
        ] {
            assert!(
                denied.contains(f),
                "{f} should be among the functions readers may not execute: {denied:?}"
            );
        }
        let internal = names(&|f| f.schema == "audience_internal");
        for f in [
            "viewer_pseudonym",
            "viewer_ref",
            "identity_hash",
            "anonymous_hash",
            "accept_token",
            "rebuild_rollups",
            "random_key",
        ] {
            assert!(internal.contains(f), "internal function {f} not found");
        }
        let views: Vec<&str> = catalog.views.iter().map(|v| v.name.as_str()).collect();
        for v in [
            "apps",
            "workspace_monthly_viewers",
            "app_monthly_viewers",
            "app_total_viewers",
            "recent_viewers",
            "app_sessions",
            "top_apps",
            "top_viewers",
            "usage_over_time",
            "viewer_trend",
            "app_access",
        ] {
            assert!(
                views.contains(&v),
                "view audience.{v} not found among {views:?}"
            );
        }
        for (t, _) in [
            ("view_events", ""),
            ("members", ""),
            ("workspace_keys", ""),
            ("token_secrets", ""),
        ] {
            assert!(
                catalog.internal_relations.iter().any(|(n, _)| n == t),
                "table {t} not found"
            );
        }
    }

    /// The read functions: executable by readers, asked about a workspace by slug.
    pub fn is_read(&self, f: &Func) -> bool {
        f.schema == "audience"
            && f.reader_may_execute
            && f.args.first().is_some_and(|(n, _)| n == "workspace")
    }

    pub fn reads(&self) -> impl Iterator<Item = &Func> {
        self.functions.iter().filter(|f| self.is_read(f))
    }
}

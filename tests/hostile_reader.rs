//! The privacy model holds against a hostile reader. Every actor logs in as
//! a real LOGIN role over the Unix socket — an outsider, a viewer member, an
//! invited viewer who never accepted, a developer of the other workspace, a
//! BI analyst holding pg_read_all_data, a developer whose login is also in a
//! team's role, a pooled application role with no token, with forged,
//! expired, `alg: none`, HS512 and tampered tokens, with a token limited to
//! another workspace, and with valid tokens as positive controls — and tries
//! every door, one module each:
//!
//! - `reads`: whoami, the views (SELECT, count, COPY), the read functions
//!   about what it may and may not see, and the doors that stay shut: raw
//!   tables, sequences, staging tables, management, ingest and internal
//!   functions, writes;
//! - `spoofing`: settings anyone can SET, objects shadowing the internals,
//!   SET ROLE and SET SESSION AUTHORIZATION to roles it is not a member of;
//! - `prepared`: statements prepared as one role and executed as another;
//! - `side_channels`: leaky functions and error oracles, the planner's
//!   statistics, EXPLAIN, DEBUG and plan-tree output;
//! - `secrets`: the keys and the token secret in any catalog, setting or
//!   statistic, pg_read_all_data included;
//! - `tickets`: the tickets behind the read functions, forged, replayed or
//!   borrowed;
//! - `tokens`: request tokens, bad, used, limited, of someone else's;
//! - `catalog`: the audit of row-level security, roles and privileges that
//!   every door relies on.
//!
//! What each actor may see is written down in `oracle` from the rules of the
//! privacy model, independently of the extension; what it gets is compared
//! with what the operator (superuser) reads of the world `fixture` builds,
//! filtered by those rules. Each test gathers every failing case before
//! judging (`probes::report`), so one run lists all. A new door is a new
//! module of tests over `Fixture`, `ACTORS` and the functions of `probes`.

#[path = "hostile_reader/catalog.rs"]
mod catalog;
#[path = "hostile_reader/fixture.rs"]
mod fixture;
#[path = "hostile_reader/oracle.rs"]
mod oracle;
#[path = "hostile_reader/prepared.rs"]
mod prepared;
#[path = "hostile_reader/probes.rs"]
mod probes;
#[path = "hostile_reader/reads.rs"]
mod reads;
#[path = "hostile_reader/secrets.rs"]
mod secrets;
#[path = "hostile_reader/side_channels.rs"]
mod side_channels;
#[path = "hostile_reader/spoofing.rs"]
mod spoofing;
#[path = "hostile_reader/surface.rs"]
mod surface;
#[path = "hostile_reader/tickets.rs"]
mod tickets;
#[path = "hostile_reader/tokens.rs"]
mod tokens;
#[path = "hostile_reader/usage_oracle.rs"]
mod usage_oracle;

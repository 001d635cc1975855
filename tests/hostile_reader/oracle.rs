//! What each actor may see, written down from the privacy model
//! independently of the extension: admins and developers see every app of
//! their workspace, accepted viewer members its public apps and the private
//! apps granted to them, anyone else nothing of it — not even that it
//! exists. The requester is the subject of a token verified in the
//! transaction, else the members mapped to the login's roles, else nobody.
//! What an actor may read is what the operator reads, filtered by those
//! rules (`Fixture::expected_views`); what it must never see in any output
//! is everything else the operator reads, and the keys and token secret
//! (`Fixture::hidden_strings`).

use crate::fixture::{
    Fixture, Tok, ACME, ALICE, APPS, DANA, GARY, GLOBEX, IVY, PEOPLE, SAM, TINA, TOKEN_SECRET,
    VICTOR, WORKSPACE_NAMES,
};
use crate::usage_oracle;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Every app of the workspace (admin, developer).
    All,
    /// These apps only (an accepted viewer member: the public apps and the private apps granted).
    Apps(&'static [&'static str]),
}

/// One actor: how it logs in, and what the rules let it see.
#[derive(Debug)]
pub struct ActorSpec {
    pub label: &'static str,
    /// Suffix of its login role (see `Fixture::role`).
    pub login: &'static str,
    pub token: Tok,
    /// The workspaces it sees, and how much of each.
    pub sees: &'static [(&'static str, Access)],
    /// Its memberships as whoami reports them: (requester, workspace, kind).
    pub whoami: &'static [(&'static str, &'static str, &'static str)],
}

pub const VICTOR_APPS: &[&str] = &["acme-dash", "acme-docs", "acme-vault"];
pub const ACME_PUBLIC: &[&str] = &["acme-dash", "acme-docs"];
pub const NOTHING: &[(&str, Access)] = &[];
pub const NOBODY: &[(&str, &str, &str)] = &[];

#[rustfmt::skip]
pub static ACTORS: &[ActorSpec] = &[
    ActorSpec { label: "outsider", login: "outsider", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "viewer member", login: "victor", token: Tok::None,
                sees: &[(ACME, Access::Apps(VICTOR_APPS))], whoami: &[(VICTOR, ACME, "viewer")] },
    ActorSpec { label: "invited viewer, not accepted", login: "ivy", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "developer of the other workspace", login: "gary", token: Tok::None,
                sees: &[(GLOBEX, Access::All)], whoami: &[(GARY, GLOBEX, "developer")] },
    ActorSpec { label: "BI analyst with pg_read_all_data", login: "analyst", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "developer of globex who is also in role team", login: "switch", token: Tok::None,
                sees: &[(ACME, Access::Apps(ACME_PUBLIC)), (GLOBEX, Access::All)],
                whoami: &[(TINA, ACME, "viewer"), (SAM, GLOBEX, "developer")] },
    ActorSpec { label: "pooled role, no token", login: "pooled", token: Tok::None, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, forged token", login: "pooled", token: Tok::Forged, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, expired token", login: "pooled", token: Tok::Expired, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, alg none token", login: "pooled", token: Tok::AlgNone, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, HS512 token", login: "pooled", token: Tok::Hs512, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, tampered token", login: "pooled", token: Tok::Tampered, sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of dana limited to globex", login: "pooled", token: Tok::Valid(DANA, Some(GLOBEX)),
                sees: &[(GLOBEX, Access::All)], whoami: &[(DANA, GLOBEX, "developer")] },
    ActorSpec { label: "pooled role, token of alice limited to a workspace she is not in", login: "pooled",
                token: Tok::Valid(ALICE, Some(GLOBEX)), sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of the invited viewer", login: "pooled", token: Tok::Valid(IVY, None),
                sees: NOTHING, whoami: NOBODY },
    ActorSpec { label: "pooled role, token of the viewer member", login: "pooled", token: Tok::Valid(VICTOR, None),
                sees: &[(ACME, Access::Apps(VICTOR_APPS))], whoami: &[(VICTOR, ACME, "viewer")] },
    // The positive control: a valid token of an admin sees all of acme.
    ActorSpec { label: "pooled role, valid token of the acme admin", login: "pooled", token: Tok::Valid(ALICE, None),
                sees: &[(ACME, Access::All)], whoami: &[(ALICE, ACME, "admin")] },
];

/// `switch` after SET ROLE team: tina, a viewer of acme's public apps.
pub static AS_TEAM: ActorSpec = ActorSpec {
    label: "switch after SET ROLE team",
    login: "team",
    token: Tok::None,
    sees: &[(ACME, Access::Apps(ACME_PUBLIC))],
    whoami: &[(TINA, ACME, "viewer")],
};

/// Any login after SET ROLE to a capability role: mapped to no member.
pub static AS_CAPABILITY: ActorSpec = ActorSpec {
    label: "after SET ROLE audience_reader",
    login: "audience_reader",
    token: Tok::None,
    sees: NOTHING,
    whoami: NOBODY,
};

impl ActorSpec {
    pub fn access(&self, workspace: &str) -> Option<Access> {
        self.sees
            .iter()
            .find(|(w, _)| *w == workspace)
            .map(|(_, a)| *a)
    }

    pub fn sees_app(&self, workspace: &str, app: &str) -> bool {
        match self.access(workspace) {
            Some(Access::All) => true,
            Some(Access::Apps(apps)) => apps.contains(&app),
            None => false,
        }
    }

    /// whoami as it should answer: one row per workspace, or one row with
    /// no workspace (requester = token subject, if a valid token named one).
    pub fn expected_whoami(&self, role: &str) -> Vec<WhoamiRow> {
        let resolved_by = if self.token.is_valid() {
            "token".to_string()
        } else if self.whoami.is_empty() {
            "nobody".to_string()
        } else {
            format!("role {role}")
        };
        if self.whoami.is_empty() {
            let subject = match self.token {
                Tok::Valid(sub, _) => Some(sub.to_string()),
                _ => None,
            };
            return vec![(subject, resolved_by, None, None)];
        }
        let mut rows: Vec<WhoamiRow> = self
            .whoami
            .iter()
            .map(|(who, ws, kind)| {
                (
                    Some(who.to_string()),
                    resolved_by.clone(),
                    Some(ws.to_string()),
                    Some(kind.to_string()),
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

pub type WhoamiRow = (Option<String>, String, Option<String>, Option<String>);

/// What an actor reads: whoami, and every view's rows as JSON text.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct State {
    pub whoami: Vec<WhoamiRow>,
    pub views: BTreeMap<String, Vec<String>>,
}

impl Fixture {
    /// Every view's rows that `spec` may read: the operator's, filtered by
    /// the rules. A viewer member's workspace totals are over the apps they
    /// see, so those are counted here from the raw events instead, and of
    /// who may open which app they read only their own rows (usage_oracle).
    pub fn expected_views(&mut self, spec: &ActorSpec) -> BTreeMap<String, Vec<String>> {
        let mut all = BTreeMap::new();
        for view in &self.catalog.views {
            let has_app = view.columns.iter().any(|c| c == "app");
            let mut rows = Vec::new();
            for (json, ws, app) in &self.operator_rows[&view.name] {
                match (spec.access(ws), app) {
                    (None, _) => {}
                    (Some(Access::All), _) => rows.push(json.clone()),
                    (Some(Access::Apps(_)), Some(app)) => {
                        if spec.sees_app(ws, app)
                            && usage_oracle::own_row(&view.name, json, spec, ws)
                        {
                            rows.push(json.clone())
                        }
                    }
                    (Some(Access::Apps(_)), None) => {
                        assert!(
                            usage_oracle::recounted(&view.name, has_app),
                            "no oracle for view {} seen in part: extend expected_views",
                            view.name
                        );
                    }
                }
            }
            for (ws, access) in spec.sees {
                if let Access::Apps(apps) = access {
                    let totals =
                        usage_oracle::workspace_totals(&mut self.op, &view.name, has_app, ws, apps);
                    rows.extend(totals.unwrap_or_default());
                }
            }
            rows.sort();
            all.insert(view.name.clone(), rows);
        }
        all
    }

    pub fn expected_state(&mut self, spec: &ActorSpec, role: &str) -> State {
        State {
            whoami: spec.expected_whoami(role),
            views: self.expected_views(spec),
        }
    }

    /// Everything `spec` must never see in any output: identities, visitor
    /// keys, slugs, names, labels and viewer_refs of what it may not see,
    /// the keys and the token secret.
    pub fn hidden_strings(&mut self, spec: &ActorSpec) -> BTreeSet<String> {
        let expected = self.expected_views(spec);
        let mut visible = BTreeSet::new();
        for rows in expected.values() {
            for row in rows {
                json_strings(&serde_json::from_str(row).unwrap(), &mut visible);
            }
        }
        for (who, _, _) in spec.whoami {
            visible.insert(who.to_string());
        }
        // Whoever holds a valid token reads its subject: authenticate
        // returns it, even to an invited viewer who sees nothing else.
        if let Tok::Valid(sub, _) = spec.token {
            visible.insert(sub.to_string());
        }
        let mut hidden = BTreeSet::new();
        for rows in self.operator_rows.values() {
            for (json, _, _) in rows {
                json_strings(&serde_json::from_str(json).unwrap(), &mut hidden);
            }
        }
        hidden.extend(PEOPLE.iter().map(|p| p.to_string()));
        for (ws, app, _, name) in APPS {
            if !spec.sees_app(ws, app) {
                hidden.insert(app.to_string());
                hidden.insert(name.to_string());
            }
        }
        for (ws, name) in WORKSPACE_NAMES {
            if spec.access(ws).is_none() {
                hidden.insert(ws.to_string());
                hidden.insert(name.to_string());
            }
        }
        let mut hidden: BTreeSet<String> = hidden.difference(&visible).cloned().collect();
        hidden.extend(self.key_hex.iter().cloned());
        hidden.insert(TOKEN_SECRET.to_string());
        hidden
    }
}

/// String values of a JSON row that name or label something: not the
/// visibility (`public`/`private`), the kinds of view and member, a status or
/// a way in (`session`, `admin`, `active`, `grant`...), nor dates, times and
/// durations, which are no secret of anyone's and turn up anywhere.
fn json_strings(v: &Value, out: &mut BTreeSet<String>) {
    const UNSECRET_KEYS: [&str; 7] = [
        "visibility",
        "last_viewed",
        "kind",
        "status",
        "via",
        "duration",
        "session_time",
    ];
    let is_date = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
    };
    if let Value::Object(map) = v {
        for (k, v) in map {
            if let Value::String(s) = v {
                if !UNSECRET_KEYS.contains(&k.as_str()) && !is_date(s) {
                    out.insert(s.clone());
                }
            }
        }
    }
}

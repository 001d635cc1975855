"""The dashboard's tests run it against the database of the client tests
(tests/clients/fixture.sql, loaded by scripts/test): its pooled login, its
token secret, and people of its acme workspace to sign in as."""

import json
import os

HOST = os.environ["PG_AUDIENCE_TEST_HOST"]
PORT = os.environ["PG_AUDIENCE_TEST_PORT"]
DB = os.environ.get("PG_AUDIENCE_CLIENTS_DB", "pg_audience_clients")

PEOPLE = {
    "admin": {"label": "Ada (admin of acme)", "identity": "ada@acme.example"},
    "viewer": {"label": "Vic (viewer member of acme)", "identity": "vic@acme.example"},
    "outsider": {"label": "Oscar (no workspace)", "identity": "oscar@nowhere.example"},
}
# Never on the page, whoever is signed in: a visitor from outside viewed only
# a public app; globex is no one's here. Only acme's admin may see the
# private app and who opened it.
NEVER_SHOWN = ["olga.outsider@elsewhere.example", "gina@globex.example", "globex"]
ADMIN_ONLY = ["payroll", "pat.payroll@acme.example"]

os.environ.update({
    "PG_AUDIENCE_DASHBOARD_DSN": f"host={HOST} port={PORT} dbname={DB} user=clients_pool",
    "PG_AUDIENCE_DASHBOARD_SECRET": "clients-dashboard-token-secret-0123456789",
    "PG_AUDIENCE_DASHBOARD_PEOPLE": json.dumps(PEOPLE),
})

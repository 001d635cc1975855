"""The dashboard's tests run it against the database of the client tests
(tests/clients/fixture.sql, loaded by scripts/test): its pooled login, its
token secret, and people of its acme workspace to sign in as."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "clients"))
from fixture_facts import ADMIN_ONLY, DB, HOST, NEVER_SHOWN, PORT  # noqa: E402,F401 (the tests import them from here)

PEOPLE = {
    "admin": {"label": "Ada (admin of acme)", "identity": "ada@acme.example"},
    "viewer": {"label": "Vic (viewer member of acme)", "identity": "vic@acme.example"},
    "outsider": {"label": "Oscar (no workspace)", "identity": "oscar@nowhere.example"},
}

os.environ.update({
    "PG_AUDIENCE_DASHBOARD_DSN": f"host={HOST} port={PORT} dbname={DB} user=clients_pool",
    "PG_AUDIENCE_DASHBOARD_SECRET": "clients-dashboard-token-secret-0123456789",
    "PG_AUDIENCE_DASHBOARD_PEOPLE": json.dumps(PEOPLE),
})

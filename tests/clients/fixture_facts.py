"""What tests/clients/fixture.sql holds, for every Python test that reads it
(the client tests here and the dashboard's): where it is, and the facts of
fixture_facts.properties, which MetabaseSync.java reads too."""

import os

HOST = os.environ["PG_AUDIENCE_TEST_HOST"]
PORT = os.environ["PG_AUDIENCE_TEST_PORT"]
DB = os.environ.get("PG_AUDIENCE_CLIENTS_DB", "pg_audience_clients")


def _read(path):
    facts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                facts[key.strip()] = value.strip()
    return facts


def _list(value):
    return [v.strip() for v in value.split(",") if v.strip()]


_FACTS = _read(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture_facts.properties"))

VIEWS = set(_list(_FACTS["views"]))
NEVER_SHOWN = _list(_FACTS["never_shown"])
ADMIN_ONLY = _list(_FACTS["admin_only"])
ADMIN, VIEWER, OUTSIDER = _FACTS["admin"], _FACTS["viewer"], _FACTS["outsider"]

"""What tests/clients/fixture.sql holds, for every Python test that reads it
(the client tests here and the dashboard's): where it is, and who no reader
may see."""

import os

HOST = os.environ["PG_AUDIENCE_TEST_HOST"]
PORT = os.environ["PG_AUDIENCE_TEST_PORT"]
DB = os.environ.get("PG_AUDIENCE_CLIENTS_DB", "pg_audience_clients")

# Identities no reader may see, whoever asks: a visitor from outside viewed
# only a public app (a pseudonym for everyone); globex's admin is nothing of
# acme's readers'. And what only acme's admin may see: the private app and
# who opened it.
NEVER_SHOWN = ["olga.outsider@elsewhere.example", "gina@globex.example", "globex"]
ADMIN_ONLY = ["pat.payroll@acme.example", "payroll"]

"""Connections for the client tests: the database scripts/test loaded with
fixture.sql, reached as each login role the way the client under test
reaches it."""

import pytest
from sqlalchemy import create_engine

from fixture_facts import ADMIN_ONLY, DB, HOST, NEVER_SHOWN, PORT  # noqa: F401 (the tests import them from here)

# The three logins of fixture.sql and what each may see of acme.
ADMIN, VIEWER, OUTSIDER = "clients_admin", "clients_viewer", "clients_outsider"
ROLES = [ADMIN, VIEWER, OUTSIDER]

# The BI views of schema audience, all a reader should find there.
VIEWS = {
    "all_monthly_viewers", "app_access", "app_monthly_viewers", "app_sessions", "app_total_viewers",
    "apps", "recent_viewers", "top_apps", "top_viewers", "usage_over_time", "viewer_trend",
    "workspace_monthly_viewers",
}


def engine_for(role):
    """SQLAlchemy 2 over psycopg 3 on the Unix socket, as Superset's
    SQLAlchemy URI would name it."""
    return create_engine(f"postgresql+psycopg://{role}@/{DB}?host={HOST}&port={PORT}", pool_pre_ping=True)


@pytest.fixture(scope="session", params=ROLES)
def role(request):
    return request.param


@pytest.fixture(scope="session")
def engine(role):
    e = engine_for(role)
    yield e
    e.dispose()

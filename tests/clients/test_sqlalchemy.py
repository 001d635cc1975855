"""What Superset (SQLAlchemy 2 + psycopg 3) and a notebook (pandas) get from
pg_audience, logged in as an admin of acme, a viewer member of acme and a
login that is nobody's: the catalogue they reflect, the rows they read, and
the errors they get. Run by scripts/test against tests/clients/fixture.sql."""

import pandas as pd
import psycopg
import pytest
from sqlalchemy import MetaData, Table, inspect, select, text

from conftest import ADMIN, ADMIN_ONLY, DB, HOST, NEVER_SHOWN, OUTSIDER, PORT, VIEWER, VIEWS, engine_for


def rows_of(engine, view):
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(text(f"SELECT * FROM audience.{view}"))]


# Reflection: what the tool lists.

def test_schema_audience_lists_the_views_and_no_table(engine):
    insp = inspect(engine)
    assert insp.get_table_names(schema="audience") == []
    assert set(insp.get_view_names(schema="audience")) == VIEWS


def test_every_view_and_column_explains_itself(engine):
    insp = inspect(engine)
    for view in VIEWS:
        assert insp.get_table_comment(view, schema="audience")["text"], view
        columns = insp.get_columns(view, schema="audience")
        assert columns, view
        for column in columns:
            assert column.get("comment"), f"{view}.{column['name']} has no comment"


def test_the_login_may_use_schema_audience_only(engine):
    with engine.connect() as c:
        usable = set(c.execute(text(
            "SELECT nspname FROM pg_catalog.pg_namespace"
            " WHERE has_schema_privilege(oid, 'USAGE') AND nspname NOT LIKE 'pg\\_%'"
            " AND nspname <> 'information_schema'")).scalars())
        # information_schema lists what the login holds a privilege on: what
        # many tools show as the tables of a database.
        listed = set(c.execute(text(
            "SELECT table_schema || '.' || table_name || ' ' || table_type FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")).scalars())
    assert {"audience_internal", "audience_ingest"}.isdisjoint(usable)
    assert "audience" in usable
    assert listed == {f"audience.{v} VIEW" for v in VIEWS}


def test_an_internal_table_is_refused_for_its_schema(engine):
    with engine.connect() as c, pytest.raises(Exception) as refused:
        c.execute(text("SELECT * FROM audience_internal.view_events"))
    assert refused.value.orig.sqlstate == "42501"
    assert "permission denied for schema audience_internal" in str(refused.value.orig)


# Reading: what each login gets.

def test_each_login_reads_what_the_privacy_rules_allow():
    admin, viewer, outsider = (engine_for(r) for r in (ADMIN, VIEWER, OUTSIDER))
    admin_apps = {r["app"] for r in rows_of(admin, "apps")}
    assert admin_apps == {"sales", "payroll"}
    assert {r["app"] for r in rows_of(viewer, "apps")} == {"sales"}
    for view in VIEWS:
        assert rows_of(outsider, view) == [], f"the outsider reads rows of {view}"
    assert {r["app"] for r in rows_of(admin, "recent_viewers")} == {"sales", "payroll"}
    assert {r["app"] for r in rows_of(viewer, "recent_viewers")} == {"sales"}
    # Identified members by identity, everyone else under a pseudonym.
    admin_sales = {r["viewer"]: r["pseudonymous"] for r in rows_of(admin, "recent_viewers") if r["app"] == "sales"}
    assert admin_sales["ada@acme.example"] is False and admin_sales["vic@acme.example"] is False
    assert sum(admin_sales.values()) >= 2, "the outside visitor and the anonymous ones are pseudonyms"


def test_no_hidden_identity_in_any_row():
    for role, forbidden in [(ADMIN, NEVER_SHOWN), (VIEWER, NEVER_SHOWN + ADMIN_ONLY), (OUTSIDER, NEVER_SHOWN + ADMIN_ONLY)]:
        engine = engine_for(role)
        for view in VIEWS:
            text_of_rows = repr(rows_of(engine, view))
            for secret in forbidden:
                assert secret not in text_of_rows, f"{role} sees {secret!r} in {view}"
    admin_text = repr(rows_of(engine_for(ADMIN), "recent_viewers"))
    assert "pat.payroll@acme.example" in admin_text, "the admin sees who opened the private app"


def test_core_reflection_and_select_as_superset_builds_them():
    engine = engine_for(VIEWER)
    monthly = Table("app_monthly_viewers", MetaData(), schema="audience", autoload_with=engine)
    with engine.connect() as c:
        rows = c.execute(
            select(monthly.c.month, monthly.c.unique_viewers)
            .where(monthly.c.workspace == "acme", monthly.c.app == "sales")
            .order_by(monthly.c.month)).all()
    assert len(rows) == 12
    # The fixture's views end yesterday: on the first of a month the current
    # month has none yet, so the busiest month is the one to look at.
    assert max(r.unique_viewers for r in rows) >= 3


def test_functions_take_bound_parameters():
    with engine_for(ADMIN).connect() as c:
        viewers = c.execute(
            text("SELECT viewer, pseudonymous FROM audience.recent_viewers(:workspace, :app, max_viewers => :n)"),
            {"workspace": "acme", "app": "payroll", "n": 5}).all()
    assert {v.viewer for v in viewers} == {"ada@acme.example", "pat.payroll@acme.example"}


def test_pandas_reads_months_onto_a_time_axis():
    frame = pd.read_sql("SELECT * FROM audience.all_monthly_viewers WHERE app = 'sales'", engine_for(VIEWER))
    assert len(frame) >= 4
    assert isinstance(frame["month_start"].dtype, pd.DatetimeTZDtype)
    assert frame["month_start"].is_monotonic_increasing
    assert frame["unique_viewers"].dtype.kind == "i"


# Errors: what a refused call shows.

def test_a_hidden_app_is_refused_like_a_missing_one():
    def refusal(app):
        with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=VIEWER) as conn:
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("SELECT * FROM audience.recent_viewers('acme', %s)", (app,))
        return refused.value.diag

    hidden, missing = refusal("payroll"), refusal("no-such-app")
    assert hidden.sqlstate == missing.sqlstate == "42704"
    assert hidden.message_primary == 'app "payroll" does not exist in workspace "acme"'
    assert hidden.message_primary.replace("payroll", "no-such-app") == missing.message_primary
    assert hidden.context.replace("payroll", "no-such-app") == missing.context
    for text_shown in (hidden.message_primary, hidden.message_detail or "", hidden.message_hint or ""):
        assert "audience_internal" not in text_shown and "ticket" not in text_shown

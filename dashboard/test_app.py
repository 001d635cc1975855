"""The page's logic, run by Streamlit's own test harness (no browser): for
each person signed in, what it shows and what it never shows."""

from streamlit.testing.v1 import AppTest

from conftest import ADMIN_ONLY, NEVER_SHOWN


def page_as(person):
    at = AppTest.from_file("app.py", default_timeout=30)
    at.query_params["as"] = person
    at.run()
    assert not at.exception, at.exception
    return at


def everything_shown(at):
    """Every text, table cell and chart datum of the page, as one string."""
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.header]
    parts += [e.value for e in at.subheader] + [e.value for e in at.info] + [str(m.value) for m in at.metric]
    parts += [t.value.to_csv() for t in at.table]  # index included
    parts += [str(e.proto) for e in at.get("arrow_vega_lite_chart")]
    # The workspaces and apps to choose from (the people to sign in as are the demo's list).
    parts += [str(s.options) for s in at.sidebar.selectbox if s.key != "person"]
    return "\n".join(parts)


def test_the_admin_sees_both_apps_and_every_panel():
    at = page_as("admin")
    assert at.sidebar.selectbox(key="app").options == ["payroll", "sales"]
    at.sidebar.selectbox(key="app").select("sales").run()
    assert [s.value for s in at.subheader][:2] == ["Monthly unique viewers", "Most recent viewers"]
    assert len(at.get("arrow_vega_lite_chart")) == 4
    recent = at.table[0].value
    assert {"ada@acme.example", "vic@acme.example"} <= set(recent.index)
    assert (recent["shown_as"] == "pseudonym").sum() >= 2
    shown = everything_shown(at)
    for secret in NEVER_SHOWN:
        assert secret not in shown
    # The private app and who opened it, for the admin only.
    at.sidebar.selectbox(key="app").select("payroll").run()
    assert set(at.table[0].value.index) == {"ada@acme.example", "pat.payroll@acme.example"}


def test_the_viewer_member_sees_the_public_app_only():
    at = page_as("viewer")
    assert at.sidebar.selectbox(key="app").options == ["sales"]
    shown = everything_shown(at)
    for secret in NEVER_SHOWN + ADMIN_ONLY:
        assert secret not in shown, secret
    assert "vic@acme.example" in shown


def test_the_outsider_sees_nothing():
    at = page_as("outsider")
    assert [i.value for i in at.info] == ["Nothing to show: Oscar (no workspace) may see no app's analytics."]
    assert not at.table and not at.get("arrow_vega_lite_chart")
    shown = everything_shown(at)
    for secret in NEVER_SHOWN + ADMIN_ONLY + ["acme", "sales"]:
        assert secret not in shown, secret


def test_switching_person_switches_the_answers():
    at = page_as("admin")
    at.sidebar.selectbox(key="person").select("viewer").run()
    assert at.sidebar.selectbox(key="app").options == ["sales"]

"""The analytics page of an app-hosting platform, on pg_audience.

For whoever is signed in, it shows what the Streamlit analytics modal shows
(monthly unique viewers, all-time viewers, the most recent viewers under
their labels) and what a Posit Connect usage dashboard shows (sessions per
day, top apps, top viewers, the month-over-month trend). It connects as a
real deployment does: one pooled login role, and in each request's
transaction a short-lived request token for the signed-in person, passed to
audience.authenticate. Every answer is already privacy-correct for that
person: the page filters nothing itself.

Settings, from the environment (bash scripts/dashboard sets them for the
demo cluster):
  PG_AUDIENCE_DASHBOARD_DSN     libpq connection string of the pooled role
  PG_AUDIENCE_DASHBOARD_SECRET  the HS256 secret given to audience.set_token_secret
  PG_AUDIENCE_DASHBOARD_PEOPLE  JSON {"key": {"label": ..., "identity": ...}}:
                                the demo's "sign in as" choice
"""

import json
import os
import time
import uuid

import altair as alt
import jwt
import pandas as pd
import psycopg
import streamlit as st

DSN = os.environ.get("PG_AUDIENCE_DASHBOARD_DSN", "")
SECRET = os.environ.get("PG_AUDIENCE_DASHBOARD_SECRET", "")
PEOPLE = json.loads(os.environ.get("PG_AUDIENCE_DASHBOARD_PEOPLE", "{}"))


def request_token(identity):
    """What the platform's web tier mints per request: good once (jti) and
    for a minute."""
    now = int(time.time())
    claims = {"sub": identity, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Request:
    """One request's transaction, in which the person is the requester."""

    def __init__(self, conn, identity):
        self.conn = conn
        conn.execute("SELECT audience.authenticate(%s)", (request_token(identity),))

    def frame(self, sql, params=()):
        cur = self.conn.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def month_chart(months):
    """Monthly unique viewers as bars, one per calendar month, the month in
    progress marked."""
    data = months.assign(
        label=pd.to_datetime(months["month"]).dt.strftime("%b %Y"),
        status=months["complete"].map({True: "complete", False: "in progress"}),
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("label:O", sort=list(data["label"]), title=None),
            y=alt.Y("unique_viewers:Q", title="unique viewers"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["complete", "in progress"], range=["#4c78a8", "#bab0ac"]),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=["label", "unique_viewers", "views", "status"],
        )
    )


def bar_chart(data, x, y, x_title, y_title, sort=None):
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:O", title=x_title, sort=sort),
            y=alt.Y(f"{y}:Q", title=y_title),
            tooltip=list(data.columns),
        )
    )


def streamlit_panel(req, workspace, app):
    """What the Streamlit analytics modal shows for one app."""
    st.header(f"Viewers of {app}")
    total = req.frame("SELECT audience.app_total_viewers(%s, %s) AS total", (workspace, app))["total"][0]
    months = req.frame("SELECT * FROM audience.app_monthly_viewers(%s, %s, 12)", (workspace, app))
    this_month = months.iloc[-1]
    left, right = st.columns(2)
    left.metric("All-time viewers", int(total))
    right.metric("Viewers this month (so far)", int(this_month["unique_viewers"]))
    st.subheader("Monthly unique viewers")
    st.altair_chart(month_chart(months), use_container_width=True)
    st.subheader("Most recent viewers")
    recent = req.frame(
        "SELECT viewer, CASE WHEN pseudonymous THEN 'pseudonym' ELSE 'member or identified' END AS shown_as,"
        " last_viewed, views FROM audience.recent_viewers(%s, %s, 20)",
        (workspace, app),
    )
    st.table(recent.set_index("viewer"))


def workspace_panel(req, workspace):
    """All-time viewers per app, and the Posit-style usage of the last 30
    days, over the apps the person may see."""
    st.header(f"All apps of {workspace}")
    totals = req.frame(
        "SELECT app, total_viewers FROM audience.app_total_viewers WHERE workspace = %s ORDER BY app", (workspace,)
    )
    st.subheader("All-time viewers per app")
    st.altair_chart(bar_chart(totals, "app", "total_viewers", None, "viewers"), use_container_width=True)

    st.header("Usage, last 30 days")
    usage = req.frame("SELECT * FROM audience.usage_over_time(%s)", (workspace,))
    usage["day"] = pd.to_datetime(usage["period"]).dt.strftime("%b %d")
    st.subheader("Sessions per day")
    st.altair_chart(
        bar_chart(usage[["day", "sessions", "visits", "unique_viewers"]], "day", "sessions", None, "sessions",
                  sort=list(usage["day"])),
        use_container_width=True,
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Top apps")
        top_apps = req.frame(
            "SELECT app, views, sessions, unique_viewers, session_time::text AS session_time"
            " FROM audience.top_apps(%s)", (workspace,))
        st.table(top_apps.set_index("app"))
    with right:
        st.subheader("Top viewers")
        top_viewers = req.frame(
            "SELECT viewer, views, sessions, session_time::text AS session_time FROM audience.top_viewers(%s)",
            (workspace,))
        st.table(top_viewers.set_index("viewer"))
    st.subheader("Is viewership growing?")
    trend = req.frame(
        "SELECT month, unique_viewers, change, change_pct, complete FROM audience.viewer_trend(%s, months => 6)",
        (workspace,))
    st.altair_chart(month_chart(trend.assign(views=trend["change"])), use_container_width=True)
    st.table(trend.assign(month=pd.to_datetime(trend["month"]).dt.strftime("%b %Y")).set_index("month"))


def signed_in_person():
    keys = list(PEOPLE)
    wanted = st.query_params.get("as")
    person = st.sidebar.selectbox(
        "Sign in as",
        keys,
        index=keys.index(wanted) if wanted in keys else 0,
        format_func=lambda k: PEOPLE[k]["label"],
        key="person",
    )
    st.query_params["as"] = person
    st.sidebar.caption("A demo choice: on a platform, the person signed in to it.")
    return PEOPLE[person]


def main():
    st.set_page_config(page_title="App analytics", layout="wide")
    st.title("App analytics")
    if not (DSN and SECRET and PEOPLE):
        st.error("Set PG_AUDIENCE_DASHBOARD_DSN, PG_AUDIENCE_DASHBOARD_SECRET and PG_AUDIENCE_DASHBOARD_PEOPLE.")
        st.stop()
    person = signed_in_person()
    with psycopg.connect(DSN) as conn, conn.transaction():
        req = Request(conn, person["identity"])
        apps = req.frame("SELECT workspace, app, name, visibility FROM audience.visible_apps()")
        st.caption(f"Signed in as {person['identity']}.")
        if apps.empty:
            st.info(f"Nothing to show: {person['label']} may see no app's analytics.")
            return
        workspace = st.sidebar.selectbox("Workspace", sorted(apps["workspace"].unique()), key="workspace")
        mine = apps[apps["workspace"] == workspace]
        st.markdown("Apps you may see here: " + ", ".join(
            f"{a.app} ({a.visibility})" for a in mine.itertuples()))
        app = st.sidebar.selectbox("App", list(mine["app"]), key="app")
        streamlit_panel(req, workspace, app)
        workspace_panel(req, workspace)


main()

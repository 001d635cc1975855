-- pg_audience keeps its data and its helpers out of sight of the people who
-- query it. `audience` (the extension's schema, from the control file) holds
-- only what users call; `audience_internal` holds the tables, the secrets and
-- the helpers behind them, and no role but the extension's owner may use it.
CREATE SCHEMA IF NOT EXISTS audience_internal;
REVOKE ALL ON SCHEMA audience_internal FROM PUBLIC;
COMMENT ON SCHEMA audience_internal IS
    'pg_audience internals: tables, per-workspace keys and helpers. Not for direct use; query the functions in schema audience.';

-- pg_audience keeps its data and its helpers out of sight of the people who
-- query it. `audience` holds only what users call; `audience_internal` holds
-- the tables, the secrets and the helpers behind them, and no role but the
-- extension's owner may use it. Both are created here, as members of the
-- extension, so that DROP EXTENSION removes them (the control file names no
-- schema: one it named would be made before the extension and outlive it).
CREATE SCHEMA audience;
CREATE SCHEMA IF NOT EXISTS audience_internal;
REVOKE ALL ON SCHEMA audience_internal FROM PUBLIC;
COMMENT ON SCHEMA audience_internal IS
    'pg_audience internals: tables, per-workspace keys and helpers. Not for direct use; query the functions in schema audience.';

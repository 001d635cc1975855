-- Every read of pg_audience over the demo data set, as the operator, an
-- admin and a viewer member: scripts/citus-compare runs it on one server and
-- on a Citus cluster holding the same data, and the two outputs must be
-- equal. :t0 is one instant for both runs (windows end there, or at now()
-- where the read's default does).
\pset footer off
\set ON_ERROR_STOP off
\echo '== operator'
\ir sweep.sql
SET ROLE compare_admin;
\echo '== admin of acme'
\ir sweep.sql
RESET ROLE;
SET ROLE compare_viewer;
\echo '== viewer member of acme'
\ir sweep.sql
RESET ROLE;

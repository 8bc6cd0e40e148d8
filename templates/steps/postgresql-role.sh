# shellcheck shell=sh
# Creates the dump role, idempotently, and grants it read access to all data.
# The role name reaches the SQL as is: the config loader admits only a plain identifier.
: "${role:?}" "${pg_host:?}" "${pg_port:?}"

# postgres cannot enter the SSH user's home; psql warns about a cwd it cannot read.
cd /
# The SQL reaches psql on stdin.
runuser -u postgres -- psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 --host="$pg_host" --port="$pg_port" --dbname=postgres <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE "$role" LOGIN CREATEDB;
  END IF;
END
\$\$;
GRANT pg_read_all_data TO "$role";
SQL

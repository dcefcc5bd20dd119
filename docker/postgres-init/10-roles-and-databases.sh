#!/usr/bin/env bash
# PostgreSQL roles and databases of fraud-detection-mlops, as `make stack-up` creates them locally:
#   - the application role APP_DB_USER (password APP_DB_PASSWORD) owning database APP_DB_NAME;
#     its tables come from `python -m fraudops.db migrate` (the compose service "migrate");
#   - the role `mlflow` (password MLFLOW_DB_PASSWORD) owning database `mlflow`, the MLflow
#     server's backend store.
# Reads: those variables (docker-compose.yml passes them from .env).
# Run by: the postgres image's entrypoint, once, when the data volume is empty
# (mounted at /docker-entrypoint-initdb.d). Idempotent: running it again changes nothing.
set -euo pipefail

: "${APP_DB_USER:?APP_DB_USER is not set (POSTGRES_USER in .env)}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is not set (POSTGRES_PASSWORD in .env)}"
: "${APP_DB_NAME:?APP_DB_NAME is not set (POSTGRES_DB in .env)}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set (see .env.example)}"

# .env.example's placeholder is not a password: refuse to create a database guarded by it.
# (container variable:.env variable)
for pair in POSTGRES_PASSWORD:POSTGRES_SUPERUSER_PASSWORD APP_DB_PASSWORD:POSTGRES_PASSWORD \
            MLFLOW_DB_PASSWORD:MLFLOW_DB_PASSWORD; do
    var="${pair%%:*}"
    if [ "${!var:-}" = "change-me" ]; then
        echo "postgres-init: ${pair#*:} is still the placeholder change-me; set real passwords in .env" >&2
        exit 1
    fi
done

# Creates (or re-passwords) a login role and creates its database when missing.
ensure_role_and_database() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" \
        --dbname postgres --set=role="$1" --set=password="$2" --set=db="$3" <<'SQL'
SELECT format('%s ROLE %I LOGIN CREATEDB PASSWORD %L',
              CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
                   THEN 'ALTER' ELSE 'CREATE' END,
              :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

ensure_role_and_database "${APP_DB_USER}" "${APP_DB_PASSWORD}" "${APP_DB_NAME}"
ensure_role_and_database mlflow "${MLFLOW_DB_PASSWORD}" mlflow
echo "postgres-init: role/database ${APP_DB_USER}/${APP_DB_NAME} and mlflow/mlflow ready"

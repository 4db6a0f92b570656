-- Runs once, when the postgres volume is created: MLflow's basic-auth users live in a database of
-- their own (the tracking data is in `mlflow`, created by POSTGRES_DB).
CREATE DATABASE mlflow_auth OWNER mlflow;

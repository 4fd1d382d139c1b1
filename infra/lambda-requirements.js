// serverless.yml: `fileName: ${file(./infra/lambda-requirements.js):fileName}`.
// Writes the Lambda requirements derived from pyproject.toml (infra/lambda_requirements.py) for the
// configured architecture and Python version, at every serverless command that resolves the
// configuration, and returns the file's path. The interpreter is LORAFILES_PYTHON_BIN, else
// .venv/bin/python (the environment the tests ran in: its installed versions are the pins).
'use strict';

const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');

module.exports = async ({ resolveVariable }) => {
  const architecture = await resolveVariable('param:architecture');
  const pythonVersion = await resolveVariable('self:custom.pythonVersion');
  const arch = architecture === 'x86_64' ? 'x86_64' : 'aarch64';
  const venvPython = path.join(ROOT, '.venv', 'bin', 'python');
  const python = process.env.LORAFILES_PYTHON_BIN || (fs.existsSync(venvPython) ? venvPython : 'python3');
  const fileName = path.join('build', `lambda-requirements-${arch}-py${pythonVersion}.txt`);
  execFileSync(python, [path.join(ROOT, 'infra', 'lambda_requirements.py'), '--out', path.join(ROOT, fileName),
    '--python-version', String(pythonVersion), '--arch', arch], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  return { fileName };
};

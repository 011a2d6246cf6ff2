# Shared set-up steps for run.sh and test.sh (sourced, not run).

# Debian packages the test suite needs (real peers are added here as issues need them).
# krb5-* and libsasl2-modules-gssapi-mit: the Kerberos peers (tests/peers/kdc.py); libkrb5-dev and
# gcc: gssapi and pykerberos build against it (requirements-kerberos.txt); faketime: a skewed KDC.
SYSTEM_PACKAGES=(python3-venv chromium slapd ldap-utils postgresql krb5-kdc krb5-admin-server krb5-user
                 libkrb5-dev gcc libsasl2-modules-gssapi-mit faketime)

setup_system_packages() {
  local missing=()
  for package in "${SYSTEM_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "== apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

setup_venv() {
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  local args=()
  for file in "$@"; do args+=(-r "$file"); done
  # Skip pip when nothing changed since the last successful install.
  local stamp=.venv/.installed digest
  digest=$(cat "$@" constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    echo "== pip install ${*} (pinned by constraints.txt)"
    # Written only after pip succeeds, so a failed install is retried even without set -e.
    .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}" -c constraints.txt || return 1
    echo "$digest" > "$stamp"
  fi
}

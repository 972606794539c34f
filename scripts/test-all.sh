#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the tests need
# (unixODBC, the FreeTDS ODBC driver and tsql; Samba's AD DC, the Kerberos client tools and
# OpenLDAP's clients and Cyrus SASL's GSSAPI module (`ldapsearch -Y GSSAPI`) for the directory
# tests; Chromium, which renders the HTML report in a test; the MIT krb5 headers and clang
# that the `gssapi` features build against; libfaketime, which runs the CLI with its clock an
# hour off in the Kerberos clock-skew test), then format, lint and every test. The tests
# start every service they use themselves (the simulator, Samba) on loopback, in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in unixodbc unixodbc-dev odbcinst tdsodbc freetds-bin \
    samba-ad-dc samba krb5-user ldb-tools ldap-utils libsasl2-modules-gssapi-mit openssl chromium \
    libkrb5-dev libclang-dev clang faketime; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The FreeTDS ODBC driver must be registered as [FreeTDS]; fail loudly if it is not.
if ! odbcinst -q -d 2>/dev/null | grep -qi '^\[FreeTDS\]'; then
    so=$(dpkg -L tdsodbc | grep -m1 'libtdsodbc.so$')
    printf '[FreeTDS]\nDescription=FreeTDS ODBC driver\nDriver=%s\n' "$so" > /tmp/freetds-odbcinst.ini
    odbcinst -i -d -f /tmp/freetds-odbcinst.ini
fi

# python-tds for mssql-sim/tests/tls_clients.rs, in a venv under the target dir. Its host
# validation calls X509.get_extension, which pyOpenSSL removed in 24.3: keep it below that.
pyvenv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/pyvenv-tds"
if ! "$pyvenv/bin/python" -c 'import pytds, OpenSSL' 2>/dev/null; then
    echo "installing python-tds into $pyvenv"
    python3 -m venv "$pyvenv"
    "$pyvenv/bin/pip" install -q 'python-tds==1.17.1' 'pyOpenSSL<24.3'
fi
export CMS_FAILOVER_PYTHON_TDS="$pyvenv/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# A hung test must fail the run long before the CI time limit.
timeout 2400 cargo test --workspace --all-features --no-fail-fast

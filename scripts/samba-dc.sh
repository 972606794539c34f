#!/usr/bin/env bash
# A throw-away Samba AD DC on loopback for the directory tests.
#
#   scripts/samba-dc.sh start DIR   provisions CMS.TEST into DIR, extends the schema with the
#                                   Skype for Business service control point (class
#                                   msRTCSIP-GlobalTopologySetting, attributes
#                                   msRTCSIP-BackEndServer / msRTCSIP-MirrorBackEndServer),
#                                   creates the SCP pointing at $SCP_BACKEND / $SCP_MIRROR,
#                                   starts samba and waits until LDAPS answers; writes DIR/env
#   scripts/samba-dc.sh stop DIR    stops it by the PID it recorded
#
# Kerberos (issue 14): after the DC is up, `start` also creates
#   - user principals cmsuser@CMS.TEST (the test operator) and intruder@CMS.TEST (a valid
#     principal no estate admits), each with a random password nobody knows; their keys are
#     exported to DIR/krb/<user>.keytab and `kinit -k -t` fills DIR/krb/<user>.ccache from it
#     (no password in any argv or file); cmsuser may read and change the SCP, every
#     authenticated user read it (ACEs on it);
#   - for each `fqdn:port[:instance]` in $SQL_INSTANCES (default `sql-a.cms.test:1433:RTC`) a
#     service account svc-<first label> with the SPNs MSSQLSvc/<fqdn>:<port> and, with an
#     instance, MSSQLSvc/<fqdn>:<instance>; every SPN's key goes into DIR/krb/service.keytab.
# Directory binds with Kerberos (SASL GSSAPI) over LDAPS: Samba's default
# `ldap server require strong auth = yes` refuses SASL over TLS both with sign/seal ("not
# allowed if TLS is used") and without ("required"); the DC is provisioned with
# `allow_sasl_over_tls`, which is how Windows AD treats GSSAPI over LDAPS.
# The DC's own computer account gets one more SPN, ldap/$SAMBA_ADDR, so a GSSAPI bind to the
# URL ldaps://$SAMBA_ADDR (which is what the tests can reach without DNS) finds a service
# principal; AD registers ldap/<dc fqdn> by itself (Microsoft: "Configuring Kerberos for IP
# Addresses" for the IP form).
# DIR/env then also names KRB5_KTNAME_SERVICE, KRB5CCNAME_USER, KRB5CCNAME_INTRUDER,
# KRB5_USER_PRINCIPAL, KRB5_INTRUDER_PRINCIPAL and KRB5_SPNS (space separated).
#
# Needs root (LDAP 389/636 and the KDC on 88 are privileged ports) and the Debian packages
# samba-ad-dc samba krb5-user ldb-tools ldap-utils openssl. Everything lives in DIR; nothing
# outside it is touched. The ports are fixed: one DC per address. $SAMBA_ADDR (default
# 127.0.0.1, the `lo` interface) picks another loopback address (127.0.0.0/8 is all local),
# so two checkouts' tests can each run one. The DC's RPC endpoints listen in 61000-61999,
# outside Linux's ephemeral range (32768-60999): in Samba's default (49152-65535) a port an
# earlier test's connection still holds made the DC fail to start (ADDRESS_ALREADY_ASSOCIATED).
set -euo pipefail

cmd=${1:?usage: samba-dc.sh start|stop DIR}
dir=${2:?usage: samba-dc.sh start|stop DIR}
realm=CMS.TEST
base="DC=cms,DC=test"
admin_pw=${SAMBA_ADMIN_PASSWORD:-Adm1n-Pass!$$}
backend=${SCP_BACKEND:-sql-a.cms.test\\RTC}
mirror=${SCP_MIRROR:-}
sql_instances=${SQL_INSTANCES:-sql-a.cms.test:1433:RTC}
addr=${SAMBA_ADDR:-127.0.0.1}
iface=lo
[ "$addr" = 127.0.0.1 ] || iface="$addr/8"

case "$cmd" in
stop)
    if [ -f "$dir/samba.pid" ]; then
        pid=$(cat "$dir/samba.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    exit 0
    ;;
start) ;;
*) echo "usage: samba-dc.sh start|stop DIR" >&2; exit 2 ;;
esac

mkdir -p "$dir/tls" "$dir/run"
dir=$(cd "$dir" && pwd)

# A test CA and a DC certificate for localhost / 127.0.0.1 (Samba's own would name the host).
(
    cd "$dir/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=cms-failover test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout key.pem -out dc.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:%s\n' "$addr" > ext
    openssl x509 -req -in dc.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem \
        -days 2 -extfile ext 2>/dev/null
    chmod 600 key.pem ca.key
)

samba-tool domain provision --targetdir="$dir" --realm=$realm --domain=CMS --server-role=dc \
    --dns-backend=NONE --adminpass="$admin_pw" \
    --option="interfaces=$iface" --option="bind interfaces only=yes" \
    --option="rpc server dynamic port range=61000-61999" \
    --option="pid directory=$dir/run" \
    --option="dsdb:schema update allowed=yes" \
    --option="ldap server require strong auth=allow_sasl_over_tls" \
    --option="tls enabled=yes" --option="tls keyfile=$dir/tls/key.pem" \
    --option="tls certfile=$dir/tls/cert.pem" --option="tls cafile=$dir/tls/ca.pem" \
    > "$dir/provision.log" 2>&1 || { tail -20 "$dir/provision.log" >&2; exit 1; }

# The schema extension and the SCP, written offline into the new database (no schema
# reload needed). Test OIDs from the documentation arc 1.3.6.1.4.1.32473 (RFC 5612).
sam="$dir/private/sam.ldb"
opt=(--option="dsdb:schema update allowed=yes")
attr() {
    cat <<LDIF
dn: CN=$1,CN=Schema,CN=Configuration,$base
objectClass: top
objectClass: attributeSchema
cn: $1
lDAPDisplayName: $2
attributeID: $3
attributeSyntax: 2.5.5.12
oMSyntax: 64
isSingleValued: TRUE
adminDisplayName: $2

LDIF
}
{
    attr ms-RTC-SIP-BackEndServer msRTCSIP-BackEndServer 1.3.6.1.4.1.32473.77.1.1
    attr ms-RTC-SIP-MirrorBackEndServer msRTCSIP-MirrorBackEndServer 1.3.6.1.4.1.32473.77.1.2
} > "$dir/schema-attrs.ldif"
cat > "$dir/schema-class.ldif" <<LDIF
dn: CN=ms-RTC-SIP-GlobalTopologySetting,CN=Schema,CN=Configuration,$base
objectClass: top
objectClass: classSchema
cn: ms-RTC-SIP-GlobalTopologySetting
lDAPDisplayName: msRTCSIP-GlobalTopologySetting
governsID: 1.3.6.1.4.1.32473.77.2.1
subClassOf: top
objectClassCategory: 1
possSuperiors: container
mayContain: msRTCSIP-BackEndServer
mayContain: msRTCSIP-MirrorBackEndServer
adminDisplayName: msRTCSIP-GlobalTopologySetting
LDIF
{
    printf 'dn: CN=RTC Service,CN=Services,CN=Configuration,%s\nobjectClass: top\nobjectClass: container\ncn: RTC Service\n\n' "$base"
    printf 'dn: CN=Topology Settings,CN=RTC Service,CN=Services,CN=Configuration,%s\nobjectClass: top\nobjectClass: msRTCSIP-GlobalTopologySetting\ncn: Topology Settings\n' "$base"
    printf 'msRTCSIP-BackEndServer: %s\n' "$backend"
    [ -z "$mirror" ] || printf 'msRTCSIP-MirrorBackEndServer: %s\n' "$mirror"
} > "$dir/scp.ldif"
ldbadd -H "$sam" "${opt[@]}" "$dir/schema-attrs.ldif" > /dev/null
ldbadd -H "$sam" "${opt[@]}" "$dir/schema-class.ldif" > /dev/null
ldbadd -H "$sam" "$dir/scp.ldif" > /dev/null

# A Kerberos client configuration that needs no DNS.
cat > "$dir/krb5.conf" <<KRB
[libdefaults]
    default_realm = $realm
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
[realms]
    $realm = {
        kdc = $addr
        admin_server = $addr
    }
KRB

samba -i -M single -s "$dir/etc/smb.conf" > "$dir/samba.log" 2>&1 < /dev/null &
echo $! > "$dir/samba.pid"
# No trailing newline: ldapsearch -y and our password_file readers take the whole file.
printf '%s' "$admin_pw" > "$dir/admin.pw"
chmod 600 "$dir/admin.pw"

# Wait (bounded: 60 s) until an authenticated LDAPS search answers.
up=0
for _ in $(seq 1 120); do
    if ! kill -0 "$(cat "$dir/samba.pid")" 2>/dev/null; then
        echo "samba exited:" >&2; tail -20 "$dir/samba.log" >&2; exit 1
    fi
    if LDAPTLS_CACERT="$dir/tls/ca.pem" ldapsearch -H "ldaps://$addr" -x -D "Administrator@cms.test" \
        -y "$dir/admin.pw" -b "$base" -s base "(objectClass=*)" dn > /dev/null 2>&1; then
        up=1
        break
    fi
    sleep 0.5
done
if [ "$up" != 1 ]; then
    echo "samba did not answer LDAPS within 60 s:" >&2; tail -20 "$dir/samba.log" >&2
    kill "$(cat "$dir/samba.pid")" 2>/dev/null || true
    exit 1
fi
# Kerberos principals (see the header). Random passwords: the keys only ever leave the DC
# as keytabs under DIR/krb (mode 600).
krb="$dir/krb"
mkdir -p "$krb"
chmod 700 "$krb"
export KRB5_CONFIG="$dir/krb5.conf"
st() { samba-tool "$@" -s "$dir/etc/smb.conf" > "$krb/samba-tool.log" 2>&1 || {
    echo "samba-tool $1 $2 failed:" >&2; tail -5 "$krb/samba-tool.log" >&2; exit 1; }; }
for u in cmsuser intruder; do
    st user create "$u" --random-password
    st domain exportkeytab "$krb/$u.keytab" --principal="$u@$realm"
    chmod 600 "$krb/$u.keytab"
    KRB5CCNAME="FILE:$krb/$u.ccache" kinit -k -t "$krb/$u.keytab" "$u@$realm" \
        || { echo "kinit $u@$realm from its keytab failed" >&2; exit 1; }
done
# cmsuser (the test operator) may read and change the SCP, as RTCUniversalServerAdmins may
# in a real forest: the directory's Kerberos bind runs as cmsuser. Every authenticated user
# may read it (as in a real forest's configuration partition), so intruder sees it and is
# refused the change (insufficientAccessRights, 50).
sid=$(samba-tool user show cmsuser -s "$dir/etc/smb.conf" --attributes objectSid 2>/dev/null \
    | sed -n 's/^objectSid: //p')
[ -n "$sid" ] || { echo "cannot read cmsuser's SID" >&2; exit 1; }
st dsacl set --objectdn="CN=Topology Settings,CN=RTC Service,CN=Services,CN=Configuration,$base" \
    --sddl="(A;;RPWP;;;$sid)(A;;RPLCLORC;;;AU)"
spns=()
for entry in $sql_instances; do
    IFS=: read -r fqdn port inst <<< "$entry"
    svc="svc-${fqdn%%.*}"
    st user create "$svc" --random-password
    st spn add "MSSQLSvc/$fqdn:$port" "$svc"
    spns+=("MSSQLSvc/$fqdn:$port")
    if [ -n "$inst" ]; then
        st spn add "MSSQLSvc/$fqdn:$inst" "$svc"
        spns+=("MSSQLSvc/$fqdn:$inst")
    fi
done
# The DC's account (its sAMAccountName, e.g. VM$) and the LDAP SPN for the address.
dc_account=$(ldbsearch -H "$sam" -s sub -b "$base" \
    '(userAccountControl:1.2.840.113556.1.4.803:=8192)' sAMAccountName 2>/dev/null \
    | sed -n 's/^sAMAccountName: //p' | head -1)
[ -n "$dc_account" ] || { echo "cannot find the DC's computer account" >&2; exit 1; }
st spn add "ldap/$addr" "$dc_account"
for spn in "${spns[@]}"; do
    st domain exportkeytab "$krb/service.keytab" --principal="$spn"
done
chmod 600 "$krb/service.keytab"

cat > "$dir/env" <<ENV
SAMBA_URL=ldaps://$addr
SAMBA_STARTTLS_URL=ldap://$addr
SAMBA_ADDR=$addr
SAMBA_CA=$dir/tls/ca.pem
SAMBA_USER=Administrator@cms.test
SAMBA_PASSWORD_FILE=$dir/admin.pw
SAMBA_BASE=$base
SAMBA_SCP_DN=CN=Topology Settings,CN=RTC Service,CN=Services,CN=Configuration,$base
SAMBA_PID=$(cat "$dir/samba.pid")
KRB5_CONFIG=$dir/krb5.conf
KRB5_KTNAME_SERVICE=FILE:$krb/service.keytab
KRB5CCNAME_USER=FILE:$krb/cmsuser.ccache
KRB5CCNAME_INTRUDER=FILE:$krb/intruder.ccache
KRB5_USER_PRINCIPAL=cmsuser@$realm
KRB5_INTRUDER_PRINCIPAL=intruder@$realm
KRB5_SPNS=${spns[*]}
SAMBA_DC_ACCOUNT=$dc_account
SAMBA_LDAP_SPN=ldap/$addr
ENV
echo "samba AD DC up: $dir/env"

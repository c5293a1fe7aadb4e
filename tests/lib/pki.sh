#!/usr/bin/env bash
# Throwaway PKI with SPIFFE X.509-SVID style certificates for integration tests.
#
# Usage:
#   pki.sh ca DIR [--rsa]
#       DIR/root.{key,crt}  self-signed root CA (ECDSA P-256, or RSA 2048 with --rsa), 10 years
#       DIR/int.{key,crt}   intermediate CA signed by the root, pathlen:0
#       DIR/bundle.crt      trust bundle (= root.crt only)
#   pki.sh issue DIR NAME SPIFFE_ID [options]
#       DIR/NAME.key        PKCS#8 PEM private key
#       DIR/NAME.crt        leaf signed by DIR's intermediate, followed by the intermediate
#   pki.sh selfsigned DIR NAME SPIFFE_ID [options]
#       DIR/NAME.{key,crt}  self-signed leaf (a peer from an unknown CA)
#
# Leaf options (issue and selfsigned):
#   --rsa BITS        RSA key of BITS bits instead of ECDSA P-256
#   --days N          valid from 1 day ago until N days from now (default 30)
#   --expired         valid from 10 days ago until 1 day ago
#   --not-yet-valid   valid from 1 day from now until 10 days from now
#   --valid FROM TO   valid from FROM until TO, each a `date -d` time such as
#                     '-70 seconds' (second-level lifetimes: expiry warnings)
#   --no-uri          no subjectAltName at all (SPIFFE_ID is ignored; CN only)
#   --uri URI         add another URI SAN (repeatable)
#   --serial N        decimal serial number (default: random 128-bit)
#
# Silent on success; on failure prints the failing openssl output and exits 1
# (2 for usage errors).  Re-running overwrites the outputs; each file is
# replaced only after all steps succeeded.
set -euo pipefail

readonly PROG=pki.sh

# usage [STATUS]: prints the header comment; to stderr unless STATUS is 0.
usage() {
	local status=${1:-2}
	if ((status == 0)); then
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
	else
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	fi
	exit "$status"
}

die() {
	printf '%s: %s\n' "$PROG" "$*" >&2
	exit 1
}

usage_die() {
	printf '%s: %s (run without arguments for usage)\n' "$PROG" "$*" >&2
	exit 2
}

# Runs a command with its chatter captured: openssl ca in particular is noisy
# on success, but its output is exactly what is needed when it fails.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s: command failed: %s\n%s\n' "$PROG" "$*" "$out" >&2
		exit 1
	fi
}

# Dates in the GeneralizedTime form accepted by `openssl ca -startdate/-enddate`.
asn1_date() {
	date -u -d "$1" +%Y%m%d%H%M%SZ
}

# openssl's config parser expands $VAR and treats # as a comment, so URIs
# (arbitrary test input, possibly malformed on purpose) must be escaped.
cnf_escape() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\$/\\\$}
	s=${s//#/\\#}
	s=${s//\"/\\\"}
	s=${s//\'/\\\'}
	printf '%s' "$s"
}

# A positive serial with an even number of hex digits, as the ca serial file
# requires; the leading 01 keeps the top bit clear.
random_serial() {
	printf '01%s' "$(openssl rand -hex 15)"
}

# Serial file form of a decimal --serial (bash arithmetic: up to 2^63-1).
decimal_to_serial() {
	local hex
	[[ $1 =~ ^[0-9]{1,18}$ ]] || usage_die "--serial wants a decimal number below 10^18, got '$1'"
	printf -v hex '%X' "$((10#$1))"
	((${#hex} % 2 == 0)) || hex=0$hex
	printf '%s' "$hex"
}

# Populates WORK with a minimal openssl ca setup.  Leaf SANs are appended by
# the caller as an [alt] section.  A fresh database per run means re-issuing
# the same subject never trips over `unique_subject` or a stale index.
init_work() {
	mkdir -p "$WORK/newcerts"
	: >"$WORK/index.txt"
	cat >"$WORK/openssl.cnf" <<EOF
[ ca ]
default_ca = tmp_ca

[ tmp_ca ]
dir = $WORK
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none

# openssl ca emits the subject in this order, so list it most-significant first.
[ policy_any ]
organizationName = optional
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = placeholder

[ v3_root ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_int ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
}

# genkey OUT [RSA_BITS]: PKCS#8 PEM key, ECDSA P-256 unless RSA_BITS is given.
genkey() {
	if [[ -n ${2:-} ]]; then
		run openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1"
	else
		run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
	fi
}

# sign SUBJECT KEY OUT EXT_SECTION START END SERIAL [ISSUER_CRT ISSUER_KEY]
# Without an issuer the certificate is self-signed by KEY.
sign() {
	local subj=$1 key=$2 out=$3 ext=$4 start=$5 end=$6 serial=$7
	local issuer_crt=${8:-} issuer_key=${9:-}
	local -a signer

	printf '%s\n' "$serial" >"$WORK/serial"
	run openssl req -new -config "$WORK/openssl.cnf" -key "$key" -subj "$subj" \
		-out "$WORK/req.csr"
	if [[ -n $issuer_crt ]]; then
		signer=(-cert "$issuer_crt" -keyfile "$issuer_key")
	else
		signer=(-selfsign -keyfile "$key")
	fi
	run openssl ca -batch -notext -config "$WORK/openssl.cnf" "${signer[@]}" \
		-in "$WORK/req.csr" -out "$out" -extensions "$ext" \
		-startdate "$start" -enddate "$end"
}

cmd_ca() {
	local dir='' rsa=''
	while (($#)); do
		case $1 in
		--rsa) rsa=2048 ;;
		-*) usage_die "unknown option for ca: $1" ;;
		*)
			[[ -z $dir ]] || usage_die "unexpected argument: $1"
			dir=$1
			;;
		esac
		shift
	done
	[[ -n $dir ]] || usage_die "ca needs DIR"

	mkdir -p "$dir"
	init_work
	local start end
	start=$(asn1_date '-1 day')
	end=$(asn1_date '+3650 days')
	genkey "$WORK/root.key" "$rsa"
	sign "/O=ktls-sidecar tests/CN=ktls-sidecar test root CA" "$WORK/root.key" \
		"$WORK/root.crt" v3_root "$start" "$end" "$(random_serial)"
	genkey "$WORK/int.key" "$rsa"
	sign "/O=ktls-sidecar tests/CN=ktls-sidecar test intermediate CA" "$WORK/int.key" \
		"$WORK/int.crt" v3_int "$start" "$end" "$(random_serial)" \
		"$WORK/root.crt" "$WORK/root.key"
	cp "$WORK/root.crt" "$WORK/bundle.crt"
	install -m 600 "$WORK/root.key" "$WORK/int.key" "$dir/"
	install -m 644 "$WORK/root.crt" "$WORK/int.crt" "$WORK/bundle.crt" "$dir/"
}

# write_leaf_ext MODE RSA_BITS NO_URI URI...: appends the [ leaf_ext ]
# section.  Built per leaf because key usage depends on the key type and the
# SAN list on the arguments.
write_leaf_ext() {
	local mode=$1 rsa=$2 no_uri=$3
	shift 3
	{
		printf '\n[ leaf_ext ]\n'
		printf 'basicConstraints = critical, CA:FALSE\n'
		# keyEncipherment only means something for RSA key transport.
		if [[ -n $rsa ]]; then
			printf 'keyUsage = critical, digitalSignature, keyEncipherment\n'
		else
			printf 'keyUsage = critical, digitalSignature\n'
		fi
		printf 'extendedKeyUsage = serverAuth, clientAuth\n'
		printf 'subjectKeyIdentifier = hash\n'
		# A self-signed leaf has no issuer key for an AKID to point at.
		[[ $mode != issue ]] || printf 'authorityKeyIdentifier = keyid:always\n'
		if ((no_uri == 0)); then
			local i=1 uri
			printf 'subjectAltName = @alt\n\n[ alt ]\n'
			for uri in "$@"; do
				printf 'URI.%d = %s\n' "$i" "$(cnf_escape "$uri")"
				i=$((i + 1))
			done
		fi
	} >>"$WORK/openssl.cnf"
}

# cmd_leaf MODE ARGS...: MODE is "issue" (signed by DIR/int) or "selfsigned".
cmd_leaf() {
	local mode=$1
	shift
	local -a pos=() uris=()
	local rsa='' days=30 validity=normal no_uri=0 serial='' valid_from='' valid_to=''
	while (($#)); do
		case $1 in
		--rsa)
			[[ ${2:-} =~ ^[0-9]+$ ]] || usage_die "--rsa wants a bit count"
			rsa=$2
			shift
			;;
		--days)
			[[ ${2:-} =~ ^[0-9]+$ ]] || usage_die "--days wants a number"
			days=$2
			shift
			;;
		--expired) validity=expired ;;
		--not-yet-valid) validity=future ;;
		--valid)
			[[ -n ${2:-} && -n ${3:-} ]] || usage_die "--valid wants FROM and TO"
			validity=explicit valid_from=$2 valid_to=$3
			shift 2
			;;
		--no-uri) no_uri=1 ;;
		--uri)
			[[ -n ${2:-} ]] || usage_die "--uri wants a value"
			uris+=("$2")
			shift
			;;
		--serial)
			[[ -n ${2:-} ]] || usage_die "--serial wants a value"
			serial=$(decimal_to_serial "$2")
			shift
			;;
		-*) usage_die "unknown option for $mode: $1" ;;
		*) pos+=("$1") ;;
		esac
		shift
	done
	((${#pos[@]} == 3)) || usage_die "$mode needs DIR NAME SPIFFE_ID"
	local dir=${pos[0]} name=${pos[1]} spiffe_id=${pos[2]}
	# NAME becomes both a file name and the CN inside -subj, where / and
	# other specials would be misparsed.
	[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || usage_die "NAME must match [A-Za-z0-9._-]+, got '$name'"
	((no_uri == 0 || ${#uris[@]} == 0)) || usage_die "--no-uri and --uri contradict each other"

	local start end
	case $validity in
	normal)
		start=$(asn1_date '-1 day')
		end=$(asn1_date "+$days days")
		;;
	expired)
		start=$(asn1_date '-10 days')
		end=$(asn1_date '-1 day')
		;;
	future)
		start=$(asn1_date '+1 day')
		end=$(asn1_date '+10 days')
		;;
	explicit)
		start=$(asn1_date "$valid_from") || usage_die "--valid: bad FROM '$valid_from'"
		end=$(asn1_date "$valid_to") || usage_die "--valid: bad TO '$valid_to'"
		;;
	esac

	if [[ $mode == issue ]]; then
		[[ -r $dir/int.crt && -r $dir/int.key ]] ||
			die "$dir/int.crt or $dir/int.key missing: run '$PROG ca $dir' first"
	else
		mkdir -p "$dir"
	fi

	init_work
	write_leaf_ext "$mode" "$rsa" "$no_uri" "$spiffe_id" "${uris[@]}"
	genkey "$WORK/leaf.key" "$rsa"
	local -a issuer=()
	[[ $mode == selfsigned ]] || issuer=("$dir/int.crt" "$dir/int.key")
	sign "/CN=$name" "$WORK/leaf.key" "$WORK/leaf.crt" leaf_ext "$start" "$end" \
		"${serial:-$(random_serial)}" "${issuer[@]}"
	if [[ $mode == issue ]]; then
		cat "$WORK/leaf.crt" "$dir/int.crt" >"$WORK/chain.crt"
	else
		cp "$WORK/leaf.crt" "$WORK/chain.crt"
	fi
	install -m 600 "$WORK/leaf.key" "$dir/$name.key"
	install -m 644 "$WORK/chain.crt" "$dir/$name.crt"
}

main() {
	(($#)) || usage
	local cmd=$1
	shift
	case $cmd in
	ca) cmd_ca "$@" ;;
	issue | selfsigned) cmd_leaf "$cmd" "$@" ;;
	-h | --help | help) usage 0 ;;
	*) usage_die "unknown subcommand '$cmd'" ;;
	esac
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pki.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
main "$@"

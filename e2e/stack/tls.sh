# shellcheck shell=bash
# The stack's private certificate authority and the server certificates it signs, for the TLS
# listeners of the local Kafka (SASL_SSL) and PostgreSQL. Clients trust the CA's certificate
# (MYSIMBDP_KAFKA_CA_FILE, MYSIMBDP_POSTGRES_CA_FILE in the env file) and check the server's
# name against the certificate, so the certificates name every address the servers are reached
# at (127.0.0.1, localhost, the real node's bridge address).
#
# Sourced after lib.sh; defines functions only:
#   tls_ca                            make the CA once; print its certificate's path
#   tls_server_cert DIR NAME SAN...   make DIR/NAME.crt and DIR/NAME.key, signed by the CA, for
#                                     the subject alternative names SAN (IP:… or DNS:…); made
#                                     again when the names change, the CA changed or fewer than
#                                     30 days are left. Prints the certificate's SHA-256
#                                     fingerprint, so a caller can tell that it changed.
# The CA's key never leaves $MYSIMBDP_STATE/tls (mode 700); wiping the stack deletes it.

_tls_dir() { printf '%s/tls\n' "$MYSIMBDP_STATE"; }

tls_ca() {
  local dir
  dir=$(_tls_dir)
  mkdir -p "$dir"
  chmod 700 "$dir"
  (
    flock 8
    if [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ] && openssl x509 -in "$dir/ca.crt" -noout -checkend 2592000 >/dev/null; then
      exit 0
    fi
    log "tls: making the stack's certificate authority ($dir/ca.crt)"
    (umask 077 && openssl req -x509 -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -keyout "$dir/ca.key.new" -out "$dir/ca.crt.new" -days 3650 -subj "/CN=mysimbdp local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>"$dir/openssl.log") || {
      cat "$dir/openssl.log" >&2
      die "tls: cannot make the certificate authority in $dir"
    }
    mv "$dir/ca.key.new" "$dir/ca.key"
    # The CA certificate is public: every client of the stack reads it.
    chmod 644 "$dir/ca.crt.new"
    mv "$dir/ca.crt.new" "$dir/ca.crt"
  ) 8>"$dir/.lock" || exit 1
  printf '%s\n' "$dir/ca.crt"
}

tls_server_cert() {
  local dir=$1 name=$2
  shift 2
  [ $# -ge 1 ] || die "usage: tls_server_cert DIR NAME SAN..."
  local ca sans
  ca=$(tls_ca)
  sans=$(IFS=,; printf '%s' "$*")
  mkdir -p "$dir"
  local crt=$dir/$name.crt key=$dir/$name.key
  if ! { [ -s "$crt" ] && [ -s "$key" ] && [ "$(cat "$dir/$name.san" 2>/dev/null)" = "$sans" ] &&
    openssl verify -CAfile "$ca" "$crt" >/dev/null 2>&1 &&
    openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null; }; then
    log "tls: issuing the certificate $crt for $sans"
    local tdir
    tdir=$(_tls_dir)
    # PKCS#8 key (what Java's PEM key store reads), a year's validity, serverAuth only.
    (umask 077 && openssl req -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$key.new" \
      -out "$dir/$name.csr" -subj "/CN=$name" 2>"$tdir/openssl.log" &&
      openssl x509 -req -in "$dir/$name.csr" -CA "$ca" -CAkey "$tdir/ca.key" -CAcreateserial \
        -CAserial "$tdir/ca.srl" -out "$crt.new" -days 365 \
        -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$sans") \
        2>>"$tdir/openssl.log") || {
      cat "$tdir/openssl.log" >&2
      die "tls: cannot issue the certificate $crt"
    }
    rm -f "$dir/$name.csr"
    mv "$key.new" "$key"
    mv "$crt.new" "$crt"
    printf '%s\n' "$sans" >"$dir/$name.san"
  fi
  openssl x509 -in "$crt" -noout -fingerprint -sha256 | sed 's/^.*=//'
}

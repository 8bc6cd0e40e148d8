#!/usr/bin/env bash
# Check the remote storage end to end with a throwaway object: endpoint and
# TLS policy, credentials, put (with the configured storage class; the
# bucket's default encryption applies), head (size + sha256 metadata), get
# (content), delete.
#
# Usage: test-remote-storage.sh
# Exit codes: 0 ok, 1 a step failed, 2 remote sync disabled or misconfigured.
set -Eeuo pipefail
HX_ARGS="$*"
HX_TYPE=remote-test
HX_QUIET=1
# shellcheck source-path=SCRIPTDIR source=hx-backup-lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hx-backup-lib.sh"

hx_init test-remote-storage
hx_cfg_true remote.enabled || hx_die "$HX_EXIT_USAGE" "remote sync is disabled for this host"
hx_remote_env || hx_die "$HX_EXIT_USAGE" "$HX_REMOTE_ERROR"
echo "Bucket:   $HX_S3_BUCKET"
echo "Endpoint: ${HX_S3_ENDPOINT:-AWS S3 (region ${HX_S3_REGION:-default})}"
echo "Layout:   retention by $HX_S3_RETENTION_BY, prefix '${HX_S3_PREFIX}'"

TMP=$(mktemp --directory -- "$HX_STORAGE/.remote-test.$$.tmpXXXXXX.partial")
hx_tmp_register "$TMP"
openssl rand -out "$TMP/probe" 4096
SHA=$(openssl dgst -sha256 -r <"$TMP/probe")
SHA=${SHA%% *}
p=""
[[ -n $HX_S3_PREFIX ]] && p="$HX_S3_PREFIX/"
KEY="${p}_hx-remote-test/$HX_HOST/probe-$(date -u +%Y%m%dT%H%M%SZ)-$$"
step() { printf '  %-8s %s\n' "$1" "$2"; }
if ! hx_s3_put "$TMP/probe" "$KEY" "$SHA" daily; then
    step FAIL "upload + size/checksum check: $HX_REMOTE_ERROR"
    hx_die "$HX_EXIT_FAIL" "remote storage test failed at upload: $HX_REMOTE_ERROR"
fi
step ok "upload, size and sha256 metadata verified ($KEY)"
if ! hx_s3_download "$HX_S3_BUCKET" "$KEY" "$TMP/back"; then
    step FAIL "download: $HX_REMOTE_ERROR"
    hx_die "$HX_EXIT_FAIL" "remote storage test failed at download: $HX_REMOTE_ERROR"
fi
GOT=$(openssl dgst -sha256 -r <"$TMP/back")
if [[ ${GOT%% *} != "$SHA" ]]; then
    step FAIL "downloaded content differs"
    hx_die "$HX_EXIT_FAIL" "remote storage test: downloaded content differs"
fi
step ok "download, content identical"
if ! out=$(hx_aws s3api delete-object --bucket "$HX_S3_BUCKET" --key "$KEY" 2>&1); then
    step WARN "delete failed (an object-lock or delete-denying policy?): $(tail -n 1 <<<"$out")"
else
    step ok "delete"
fi
hx_info remote_test_ok "remote storage test passed" "bucket=$HX_S3_BUCKET"
echo "Remote storage OK"

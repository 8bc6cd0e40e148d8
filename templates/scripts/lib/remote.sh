#!/usr/bin/env bash
# hx-backup library: S3: the AWS CLI environment, uploads and downloads
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# ------------------------------------------------------------------ remote ---

hx_aws_bin() {
    if [[ -x /usr/bin/aws ]]; then
        printf /usr/bin/aws
    else
        command -v aws
    fi
}

# hx_remote_env: check the remote config and export the AWS CLI environment
# (credentials through AWS_SHARED_CREDENTIALS_FILE, never argv). TLS is
# required unless the endpoint is loopback.
hx_remote_env() {
    HX_REMOTE_ERROR=""
    local -a cfgv=()
    hx_cfg_into cfgv remote.bucket remote.prefix remote.region remote.endpoint remote.credentialsFile remote.retentionBy \
        remote.retries remote.retryDelaySeconds remote.storageClass remote.caFile
    HX_S3_BUCKET=${cfgv[0]}
    HX_S3_PREFIX=${cfgv[1]%/}
    HX_S3_REGION=${cfgv[2]}
    HX_S3_ENDPOINT=${cfgv[3]}
    HX_S3_CREDS=${cfgv[4]}
    HX_S3_RETENTION_BY=${cfgv[5]}
    HX_S3_RETRIES=${cfgv[6]}
    HX_S3_RETRY_DELAY=${cfgv[7]}
    HX_S3_STORAGE_CLASS=${cfgv[8]}
    HX_S3_CA_FILE=${cfgv[9]}
    HX_AWS=$(hx_aws_bin) || {
        HX_REMOTE_ERROR="aws CLI not found"
        return 1
    }
    if [[ -n $HX_S3_ENDPOINT ]]; then
        local hostport host
        hostport=${HX_S3_ENDPOINT#*://}
        hostport=${hostport%%/*}
        host=${hostport%:*}
        [[ $hostport == \[* ]] && host=${hostport%%]*} && host=${host#[}
        case $HX_S3_ENDPOINT in
            https://*) ;;
            http://*)
                if [[ ! $host =~ ^(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|::1)$ ]]; then
                    HX_REMOTE_ERROR="refusing plain-HTTP S3 endpoint $HX_S3_ENDPOINT: TLS is required for non-loopback endpoints"
                    return 1
                fi
                ;;
            *)
                HX_REMOTE_ERROR="remote.endpoint must be an http(s) URL"
                return 1
                ;;
        esac
    fi
    if [[ -n $HX_S3_CREDS ]]; then
        [[ -r $HX_S3_CREDS ]] || {
            HX_REMOTE_ERROR="S3 credentials file not readable: $HX_S3_CREDS"
            return 1
        }
        export AWS_SHARED_CREDENTIALS_FILE=$HX_S3_CREDS
        export AWS_PROFILE=default
    fi
    export AWS_CONFIG_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" AWS_MAX_ATTEMPTS=2 AWS_RETRY_MODE=standard
    [[ -n $HX_S3_REGION ]] && export AWS_DEFAULT_REGION=$HX_S3_REGION
    [[ -n $HX_S3_BUCKET ]] || {
        HX_REMOTE_ERROR="remote.bucket is empty"
        return 1
    }
}

hx_aws() {
    local -a ep=()
    [[ -n $HX_S3_ENDPOINT ]] && ep=(--endpoint-url "$HX_S3_ENDPOINT")
    [[ -n $HX_S3_CA_FILE ]] && ep+=(--ca-bundle "$HX_S3_CA_FILE")
    "$HX_AWS" "${ep[@]}" --cli-connect-timeout 5 --cli-read-timeout 120 --output json "$@"
}

# hx_s3_download BUCKET KEY FILE
hx_s3_download() {
    local out
    if ! out=$(hx_aws s3api get-object --bucket "$1" --key "$2" "$3" 2>&1); then
        HX_REMOTE_ERROR=$(tail -n 2 <<<"$out" | tr '\n' ' ')
        return 1
    fi
}

# hx_s3_put FILE KEY SHA256 CLASS: upload (multipart when large), then check
# the object's size and the sha256 recorded in its metadata. An empty CLASS
# uploads an object of no retention class (no class metadata or tag), which
# no class's lifecycle rule expires.
hx_s3_put() {
    local file=$1 key=$2 sha=$3 class=$4 out size head
    size=$(stat --format=%s -- "$file")
    # No SSE headers: the bucket's default SSE-KMS key applies (see HostConfigFile.remote.credentialsFile).
    local -a extra=(--storage-class "$HX_S3_STORAGE_CLASS" --metadata "sha256=$sha${class:+,retention-class=$class}")
    if ! out=$(hx_aws s3 cp --only-show-errors --no-progress "${extra[@]}" "$file" "s3://$HX_S3_BUCKET/$key" 2>&1); then
        HX_REMOTE_ERROR="upload failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
    if ! head=$(hx_aws s3api head-object --bucket "$HX_S3_BUCKET" --key "$key" 2>&1); then
        HX_REMOTE_ERROR="head-object failed: $(tail -n 2 <<<"$head" | tr '\n' ' ')"
        return 1
    fi
    if [[ $(jq --raw-output '.ContentLength' <<<"$head") != "$size" ]]; then
        HX_REMOTE_ERROR="uploaded size differs for $key"
        return 1
    fi
    if [[ $(jq --raw-output '.Metadata.sha256 // ""' <<<"$head") != "$sha" ]]; then
        HX_REMOTE_ERROR="uploaded checksum metadata differs for $key"
        return 1
    fi
    if [[ $HX_S3_RETENTION_BY == tag && -n $class ]]; then
        if ! out=$(hx_aws s3api put-object-tagging --bucket "$HX_S3_BUCKET" --key "$key" --tagging "TagSet=[{Key=retention-class,Value=$class}]" 2>&1); then
            HX_REMOTE_ERROR="tagging failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
            return 1
        fi
    fi
}

# hx_s3_key CLASS TYPE TARGET FILE: object key for the configured layout.
hx_s3_key() {
    local class=$1 type=$2 target=$3 file=$4 p=""
    [[ -n $HX_S3_PREFIX ]] && p="$HX_S3_PREFIX/"
    if [[ $HX_S3_RETENTION_BY == tag ]]; then
        printf '%s%s/%s/%s/%s' "$p" "$HX_HOST" "$type" "$target" "$file"
    else
        printf '%s%s/%s/%s/%s/%s' "$p" "$class" "$HX_HOST" "$type" "$target" "$file"
    fi
}

# hx_s3_source_key TYPE TARGET FILE: the key of a source's object outside the
# retention classes, `<prefix>/<host>/<type>/<target>/<file>` in both layouts
# (the source's restore-test record): no class prefix or tag, so no class's
# lifecycle rule expires it; overwritten versions go with the housekeeping rule.
hx_s3_source_key() {
    local p=""
    [[ -n $HX_S3_PREFIX ]] && p="$HX_S3_PREFIX/"
    printf '%s%s/%s/%s/%s' "$p" "$HX_HOST" "$1" "$2" "$3"
}

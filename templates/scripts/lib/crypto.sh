#!/usr/bin/env bash
# hx-backup library: keys, encryption and the HMAC
# Sourced by hx-backup-lib.sh; never run.
# shellcheck disable=SC2034  # HX_* globals set here are read by the other lib files and the scripts

# ------------------------------------------------------------------- keys ---

# hx_key_load KEYID: set HX_KEY_ENC / HX_KEY_MAC (hex, never exported).
hx_key_load() {
    local id=$1 file line
    [[ $id =~ ^[A-Za-z0-9._-]+$ ]] || {
        HX_KEY_ERROR="invalid key id"
        return 1
    }
    file="$HX_KEYRING/$id.key"
    if [[ ! -r $file && $id == "$HX_KEY_ID" && -n $HX_KEYFILE ]]; then
        file=$HX_KEYFILE
    fi
    if [[ ! -r $file ]]; then
        HX_KEY_ERROR="key '$id' not found or not readable ($file)"
        return 1
    fi
    line=""
    IFS= read -r line <"$file" || true
    line=${line%$'\r'}
    if [[ ! $line =~ ^[0-9a-fA-F]{128}$ ]]; then
        HX_KEY_ERROR="key file for '$id' is malformed (expected 128 hex characters)"
        return 1
    fi
    HX_KEY_ENC=${line:0:64}
    HX_KEY_MAC=${line:64:64}
    HX_KEY_LOADED_ID=$id
}

# hx_hmac_hex KEYHEX < message: HMAC-SHA256 (RFC 2104) without putting the
# key on argv: the padded key bytes are produced by the printf builtin.
hx_hmac_hex() {
    local key=$1 ipad="" opad="" i b inner
    if ((${#key} > 128)); then
        return 1
    fi
    for ((i = 0; i < 64; i++)); do
        b=0
        if ((i * 2 < ${#key})); then
            b=$((16#${key:i*2:2}))
        fi
        printf -v ipad '%s\\x%02x' "$ipad" $((b ^ 0x36))
        printf -v opad '%s\\x%02x' "$opad" $((b ^ 0x5c))
    done
    inner=$({
        printf '%b' "$ipad"
        cat
    } | openssl dgst -sha256 -r)
    inner=${inner%% *}
    local inner_esc=""
    for ((i = 0; i < 64; i += 2)); do
        inner_esc+="\\x${inner:i:2}"
    done
    local out
    out=$({
        printf '%b' "$opad"
        printf '%b' "$inner_esc"
    } | openssl dgst -sha256 -r)
    printf '%s\n' "${out%% *}"
}

hx_encrypt() {
    openssl enc -aes-256-cbc -salt -pbkdf2 -md sha256 -iter "$HX_PBKDF2_ITER" -pass fd:3 3< <(printf '%s\n' "$HX_KEY_ENC")
}

hx_decrypt() {
    local iter=$1
    openssl enc -d -aes-256-cbc -pbkdf2 -md sha256 -iter "$iter" -pass fd:3 3< <(printf '%s\n' "$HX_KEY_ENC")
}

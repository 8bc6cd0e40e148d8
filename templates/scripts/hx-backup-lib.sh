#!/usr/bin/env bash
# hx-backup shared library. Sourced by every hx-backup script from its own
# directory; never executed directly. It loads lib/: one file per concern,
# and one module per data source under lib/source (MODULE.sh, with its parts
# in MODULE-PART.sh), each registering the types it handles
# (HX_SOURCE_MODULE) and providing the same verbs: dump, content_hasher,
# restore_test and restore.
#
# Exit codes (all scripts):
#   0  success
#   1  failure (the backup/verification/restore did not complete)
#   2  usage or configuration error (bad arguments, unreadable/corrupt config,
#      a field the render did not write, missing or malformed key)
#   3  another run of the same job holds the lock; nothing was done
#   4  verification failed (checksum, MAC, structure or restore test)
#   5  partial success: the local backup is complete and verified, but the
#      remote sync failed (it is retried by the next run)
#
# Config: $HX_BACKUP_CONFIG (set by the units), else the path in lib/config-path
# (written by the deploy); the rendered HostConfigFile (render/hostConfig.ts),
# read through lib/config.sh.
#
# Secrets (key halves, passwords, S3 credentials) never appear on argv, in
# logs or in metrics: keys are read with the `read` builtin and passed to
# openssl on a file descriptor; the HMAC is built from bash builtins.

if [[ -n ${HX_LIB_LOADED:-} ]]; then
    return 0
fi
HX_LIB_LOADED=1
HX_SCRIPTS_DIR_SELF=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source-path=SCRIPTDIR source=lib/core.sh
source "$HX_SCRIPTS_DIR_SELF/lib/core.sh"
# shellcheck source=lib/tmp.sh
source "$HX_SCRIPTS_DIR_SELF/lib/tmp.sh"
# shellcheck source=lib/log.sh
source "$HX_SCRIPTS_DIR_SELF/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HX_SCRIPTS_DIR_SELF/lib/config.sh"
# shellcheck source=lib/lock.sh
source "$HX_SCRIPTS_DIR_SELF/lib/lock.sh"
# shellcheck source=lib/crypto.sh
source "$HX_SCRIPTS_DIR_SELF/lib/crypto.sh"
# shellcheck source=lib/pipeline.sh
source "$HX_SCRIPTS_DIR_SELF/lib/pipeline.sh"
# shellcheck source=lib/manifest.sh
source "$HX_SCRIPTS_DIR_SELF/lib/manifest.sh"
# shellcheck source=lib/verify.sh
source "$HX_SCRIPTS_DIR_SELF/lib/verify.sh"
# shellcheck source=lib/retention.sh
source "$HX_SCRIPTS_DIR_SELF/lib/retention.sh"
# shellcheck source=lib/metrics.sh
source "$HX_SCRIPTS_DIR_SELF/lib/metrics.sh"
# shellcheck source=lib/remote.sh
source "$HX_SCRIPTS_DIR_SELF/lib/remote.sh"
# shellcheck source=lib/source/postgresql.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/postgresql.sh"
# shellcheck source=lib/source/postgresql-dump.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/postgresql-dump.sh"
# shellcheck source=lib/source/postgresql-restore.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/postgresql-restore.sh"
# shellcheck source=lib/source/redis.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/redis.sh"
# shellcheck source=lib/source/redis-bgsave.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/redis-bgsave.sh"
# shellcheck source=lib/source/archive.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/archive.sh"
# shellcheck source=lib/source/pitr.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/pitr.sh"
# shellcheck source=lib/source/pitr-restore.sh
source "$HX_SCRIPTS_DIR_SELF/lib/source/pitr-restore.sh"

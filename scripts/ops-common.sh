# Shared by the operations scripts (sourced, not run). Every setting has an environment override.
# shellcheck shell=bash
ROLES=(metrics log trace alert)
declare -A DEFAULT_PORT=([metrics]=8001 [log]=8002 [trace]=8003 [alert]=8004)
AIRISD=${AIRISD:-$(command -v airisd || echo /usr/bin/airisd)}
DATA_DIR=${AIRISD_DATA_DIR:-/var/lib/airisd}
LOG_DIR=${AIRISD_LOG_DIR:-/var/log/airisd}
RUN_DIR=${AIRISD_RUN_DIR:-$DATA_DIR}
BACKUP_ROOT=${AIRISD_BACKUP_ROOT:-/backup}

# The URL of a role's listener: AIRISD_<ROLE>_URL, else http://127.0.0.1:<its default port>.
role_url() {
    local var="AIRISD_${1^^}_URL"
    printf '%s' "${!var:-http://127.0.0.1:${DEFAULT_PORT[$1]}}"
}

# The config a role runs with: AIRISD_CONFIG, else /etc/airisd/roles/<role>.toml (the package's).
role_config() {
    if [ -n "${AIRISD_CONFIG:-}" ]; then printf '%s' "$AIRISD_CONFIG"; else printf '/etc/airisd/roles/%s.toml' "$1"; fi
}

# systemd manages the roles when it is PID 1 and the package's units are installed.
use_systemd() {
    [ -z "${AIRISD_NO_SYSTEMD:-}" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null \
        && systemctl cat airisd@.service >/dev/null 2>&1
}

# Sourced by the scripts that need root (hugepages, network namespaces, packages):
#   source config/as_root.sh; as_root "$0" "$@"
# As root it returns; otherwise it re-runs the script under sudo, or says how when there is none.
as_root() {
    [ "$(id -u)" -eq 0 ] && return 0
    local script=$1
    shift
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E bash "$script" "$@"
    fi
    echo "error: $(basename "$script") needs root (hugepages, network namespaces, packages) and sudo is not installed: run it as root" >&2
    exit 1
}

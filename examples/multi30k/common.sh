# shellcheck shell=bash disable=SC2154
# Helpers sourced by train.sh and experiments.sh (they set PROG first).

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

# Print a command on one line, quoting only the words that need it (copy-pasteable).
print_command() {
  local word out=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
      out+=("$word")
    else
      out+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

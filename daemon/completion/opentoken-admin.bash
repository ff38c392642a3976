# bash completion for opentoken-admin (daemon/admin_main.cc). Installed as
# /usr/share/bash-completion/completions/opentoken-admin; or `source` it from ~/.bashrc.
_opentoken_admin() {
  local cur prev cmd i w
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev=""
  ((COMP_CWORD > 0)) && prev="${COMP_WORDS[COMP_CWORD - 1]}"
  local commands="init status inspect rotate-keys rewrap verify audit-verify audit-prune check-config purge-expired backup restore migrate"
  case "$prev" in
    --config|--to-config) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --move-to) COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    --before) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return 0 ;;
  esac
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    case "${COMP_WORDS[i - 1]}" in --config|--to-config|--move-to|--before|--format) continue ;; esac
    cmd="$w"; break
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "--help --version --config" -- "$cur"))
    else COMPREPLY=($(compgen -W "$commands" -- "$cur")); fi
    return 0
  fi
  local opts="--config --help"
  case "$cmd" in
    init) opts+=" --new-store --grant-to" ;;
    status) opts+=" --format" ;;
    rotate-keys) opts+=" --no-rewrap" ;;
    audit-verify) opts+=" --partial" ;;
    audit-prune) opts+=" --before --move-to" ;;
    migrate) opts+=" --to-config --allow-non-empty" ;;
  esac
  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    case "$cmd" in
      backup|restore|audit-verify) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
  fi
  return 0
}
complete -F _opentoken_admin opentoken-admin

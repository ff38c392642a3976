# bash completion for opentoken (clients/cpp). Install: copy to
# /usr/share/bash-completion/completions/opentoken, or `source` it from ~/.bashrc.
_opentoken() {
  local cur prev cmd sub
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev=""
  ((COMP_CWORD > 0)) && prev="${COMP_WORDS[COMP_CWORD - 1]}"
  local commands="register confirm login logout whoami access-code access-token tokenize detokenize delete sign request help"
  local global="--socket --url --cacert --profile --config --format --timeout --help --version"
  case "$prev" in
    --socket|--cacert|--config|--password-file|--totp-file|--totp-key-file|--secret-file|--bearer-file|--mail-code-file|--input|--output|--mail)
      COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return 0 ;;
    --status) COMPREPLY=($(compgen -W "active inactive" -- "$cur")); return 0 ;;
    --scope)
      COMPREPLY=($(compgen -W "account account.read accessCodes accessCodes.read accessCodes.create accessCodes.delete accessTokens accessTokens.read accessTokens.create accessTokens.update accessTokens.delete tokens tokens.create" -- "$cur"))
      return 0 ;;
  esac
  local i w
  cmd=""; sub=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    if [[ -z "$cmd" ]]; then cmd="$w"; elif [[ -z "$sub" ]]; then sub="$w"; fi
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else COMPREPLY=($(compgen -W "$commands" -- "$cur")); fi
    return 0
  fi
  local opts=""
  case "$cmd" in
    register) opts="--password-file --password-fd --no-qr" ;;
    confirm) opts="--mail" ;;
    login) opts="--account --password-file --password-fd --totp-file --totp-fd --totp-key-file" ;;
    logout) opts="--account" ;;
    whoami) opts="--account --bearer-file --bearer-fd" ;;
    access-code)
      if [[ -z "$sub" && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "create list revoke" -- "$cur")); return 0
      fi
      opts="--account --description --save --bearer-file --bearer-fd" ;;
    access-token)
      if [[ -z "$sub" && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "create list get update delete email-request email-revoke-request email-revoke" -- "$cur")); return 0
      fi
      opts="--name --description --scope --expires --status --bearer-file --bearer-fd --mail-code-file --mail-code-fd" ;;
    tokenize) opts="--account --access-code --secret-file --secret-fd --public --expires --content-type --input" ;;
    detokenize) opts="--account --access-code --secret-file --secret-fd --output" ;;
    delete) opts="--account --access-code --secret-file --secret-fd" ;;
    sign) opts="--account --access-code --secret-file --secret-fd --content-type --data" ;;
    request) opts="--account --access-code --secret-file --secret-fd --content-type --data --include" ;;
    help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return 0 ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
  elif [[ "$cmd" == sign || "$cmd" == request ]] && [[ -z "$sub" ]]; then
    COMPREPLY=($(compgen -W "GET POST PUT PATCH DELETE" -- "$cur"))
  fi
  return 0
}
complete -F _opentoken opentoken

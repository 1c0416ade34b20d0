# bash completion for jailpy.
# Installed as share/bash-completion/completions/jailpy; or: eval "$(jailpy completion bash)"
#
# Options and their values come from jailpy (click's protocol, _JAILPY_COMPLETE);
# a path argument is left to bash's own file-name completion; after `--` the
# command is completed as if typed alone (as sudo's completion does).

_jailpy() {
    local cur=${COMP_WORDS[COMP_CWORD]} i
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == -- ]]; then
            if declare -F _command_offset >/dev/null; then
                _command_offset $((i + 1))
            else
                mapfile -t COMPREPLY < <(compgen -c -- "$cur")
            fi
            return 0
        fi
    done

    local answer kind value
    answer=$(COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \
        _JAILPY_COMPLETE=bash_complete "${COMP_WORDS[0]}" 2>/dev/null) || return 0
    COMPREPLY=()
    while IFS=, read -r kind value; do
        case $kind in
            plain) COMPREPLY+=("$value") ;;
            file | dir)
                if declare -F _filedir >/dev/null; then
                    [[ $kind == dir ]] && _filedir -d || _filedir
                else
                    [[ $kind == dir ]] && compopt -o dirnames || compopt -o default
                fi
                return 0
                ;;
        esac
    done <<<"$answer"
    return 0
}

complete -o nosort -F _jailpy jailpy 2>/dev/null || complete -F _jailpy jailpy

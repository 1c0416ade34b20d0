# fish completion for jailpy.
# Installed as share/fish/vendor_completions.d/jailpy.fish; or: jailpy completion fish | source
#
# Options and their values come from jailpy (click's protocol, _JAILPY_COMPLETE);
# a path argument is left to fish's own file-name completion; after `--` the
# command is completed as if typed alone.

function __jailpy_complete
    set -l words (commandline -opc)
    if set -l at (contains -i -- -- $words)
        set -l rest $words[(math $at + 1)..-1] (commandline -ct)
        complete -C (string join ' ' -- (string escape -- $rest))
        return
    end
    set -l answer (env _JAILPY_COMPLETE=fish_complete COMP_WORDS=(commandline -cp) \
        COMP_CWORD=(commandline -ct) $words[1] 2>/dev/null)
    for line in $answer
        set -l kind (string split -m 1 , -- $line)
        switch $kind[1]
            case plain
                echo $kind[2]
            case file dir
                __fish_complete_path (commandline -ct)
                return
        end
    end
end

complete -c jailpy -f -a '(__jailpy_complete)'

# shell_commands.awk -- prints "word<TAB>FILE" for each word of a shell script
# that stands where a command goes (used by scripts/check_deps).  Knows
# quotes, $(...) and (...) nesting, $((...)), ${...}, heredocs, comments,
# backslash-newline, redirections, case patterns, leading VAR=value
# assignments and the wrappers exec, env, command, nohup, time, timeout,
# sudo, $sudo.  Words are printed as written, quotes removed: the caller
# drops variables, paths, builtins and functions.
BEGIN { RS = "\0" }  # the whole file at once
{ text = $0 }
END {
    n = length(text); i = 1; sp = 0; stack[0] = "cmd"; at_cmd = 1; nhd = 0
    while (i <= n) {
        c = substr(text, i, 1)
        ctx = stack[sp]
        if (ctx == "dq") {  # inside "...": only $( and the closing quote matter
            if (c == "\\") { i += 2; continue }
            if (c == "\"") { sp--; i++; continue }
            if (substr(text, i, 3) == "$((") { push("arith"); depth[sp] = 2; i += 3; continue }
            if (substr(text, i, 2) == "$(") { push("cmd"); at_cmd = 1; i += 2; continue }
            i++; continue
        }
        if (ctx == "arith") {
            if (c == "(") depth[sp]++
            else if (c == ")") { depth[sp]--; if (depth[sp] == 0) sp-- }
            i++; continue
        }
        # a command context
        if (c == "\n") {
            if (casest[sp] != 1 && casest[sp] != 2) at_cmd = 1
            i++
            while (nhd > 0) {  # skip heredoc bodies, in order
                d = hd[1]
                for (k = 1; k < nhd; k++) hd[k] = hd[k + 1]
                nhd--
                while (i <= n) {
                    e = index(substr(text, i), "\n"); if (e == 0) e = n - i + 2
                    line = substr(text, i, e - 1); i += e
                    sub(/^\t+/, "", line)
                    if (line == d) break
                }
            }
            continue
        }
        if (c == " " || c == "\t") { i++; continue }
        if (c == "\\" && substr(text, i + 1, 1) == "\n") { i += 2; continue }
        if (c == "#") { while (i <= n && substr(text, i, 1) != "\n") i++; continue }
        if (casest[sp] == 2) {  # a case pattern, up to its ")", or esac
            if (substr(text, i, 4) == "esac" && substr(text, i + 4, 1) ~ /[ \t\n;)]|^$/) {
                casest[sp] = 0; at_cmd = 0; i += 4; continue
            }
            while (i <= n && substr(text, i, 1) != ")") i++
            i++; casest[sp] = 3; at_cmd = 1; continue
        }
        if (substr(text, i, 2) == ";;" && casest[sp] == 3) { casest[sp] = 2; i += 2; continue }
        if (c == ";" || c == "|" || c == "&") { at_cmd = 1; i++; continue }
        if (substr(text, i, 3) == "$((") { push("arith"); depth[sp] = 2; i += 3; at_cmd = 0; continue }
        if (substr(text, i, 2) == "$(") { push("cmd"); at_cmd = 1; i += 2; continue }
        if (c == "(") { push("cmd"); at_cmd = 1; i++; continue }
        if (c == ")") { if (sp > 0) sp--; at_cmd = substr(text, i - 1, 1) == "("; i++; continue }  # f() {
        if (substr(text, i, 2) == "<<" && substr(text, i, 3) != "<<<") {
            i += 2; if (substr(text, i, 1) == "-") i++
            while (substr(text, i, 1) == " ") i++
            w = readword(); gsub(/['"\\]/, "", w); hd[++nhd] = w
            continue
        }
        if (c == ">" || c == "<") {  # a redirection: its target is no command
            i++
            while (substr(text, i, 1) ~ /[<>&|]/) i++
            while (substr(text, i, 1) == " ") i++
            readword()
            continue
        }
        w = readword()
        if (w == "") { i++; continue }
        if (casest[sp] == 1) { if (w == "in") casest[sp] = 2; continue }
        if (!at_cmd) continue
        if (w ~ /^[0-9]+$/ && substr(text, i, 1) ~ /[<>]/) continue  # 2>&1
        if (w ~ /^[A-Za-z_][A-Za-z0-9_]*=/) continue                 # VAR=value cmd
        if (w ~ /^(if|then|else|elif|do|while|until|!|\{|exec|command|nohup|time|sudo|\$sudo)$/) continue
        if (w == "env") { env = 1; continue }
        if (env && w ~ /^-/) { if (w == "-u") envarg = 1; continue }
        if (envarg) { envarg = 0; continue }
        if (w == "timeout") { tmo = 1; continue }
        if (tmo && w ~ /^[0-9.]+[smhd]?$/) { tmo = 0; continue }
        env = 0; tmo = 0; at_cmd = 0
        if (w == "case") { casest[sp] = 1; continue }
        if (w == "esac") { casest[sp] = 0; continue }
        if (w ~ /^(fi|done|\}|for|in|function)$/) continue
        print w "\t" FILENAME
    }
}
function push(kind) { sp++; stack[sp] = kind; casest[sp] = 0 }
# Reads one word at i, quotes removed.  A "..." holding $( stops the word
# there: the main loop then scans the inner command.
function readword(   w, c, q, j, d) {
    w = ""
    while (i <= n) {
        c = substr(text, i, 1)
        if (c ~ /[ \t\n;|&<>()]/) break
        if (c == "\\") { w = w substr(text, i + 1, 1); i += 2; continue }
        if (c == "'") {
            q = index(substr(text, i + 1), "'"); if (q == 0) q = n - i
            w = w substr(text, i + 1, q - 1); i += q + 1; continue
        }
        if (c == "\"") {
            for (j = i + 1; j <= n; j++) {
                d = substr(text, j, 1)
                if (d == "\\") { j++; continue }
                if (d == "\"" || substr(text, j, 2) == "$(") break
            }
            if (d == "\"") { w = w substr(text, i + 1, j - i - 1); i = j + 1; continue }
            w = w substr(text, i + 1, j - i - 1); push("dq"); i = j; return w
        }
        if (c == "$" && substr(text, i + 1, 1) == "{") {
            q = index(substr(text, i), "}"); if (q == 0) q = n - i + 1
            w = w substr(text, i, q); i += q; continue
        }
        if (c == "$" && substr(text, i + 1, 1) == "(") return w "$"
        w = w c; i++
    }
    return w
}

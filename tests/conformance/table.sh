#!/usr/bin/env bash
# Prints a Markdown table that compares summaries written by run.sh. It has
# one row per test and one column per summary. Each cell is the test's
# status and its TAP assertions as "ok/run", where skipped assertions count
# as run. A last row counts the passing tests, and the failure reasons of
# each column follow the table.
#
# Usage:
#   tests/conformance/table.sh LABEL=SUMMARY [LABEL=SUMMARY]...
#   tests/conformance/table.sh runc=conformance-runc.txt crun=conformance-crun.txt
#
# A LABEL with an empty SUMMARY ("cblock-runtime=") gets a column of
# "not yet measured".
set -eu

[ $# -ge 1 ] || {
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
}

labels=()
files=()
for column in "$@"; do
    case $column in
        *=*) ;;
        *) echo "table: expected LABEL=SUMMARY, got '$column'" >&2; exit 2 ;;
    esac
    label=${column%%=*}
    file=${column#*=}
    if [ -n "$file" ] && [ ! -f "$file" ]; then
        echo "table: summary $file not found: run tests/conformance/run.sh first" >&2
        exit 1
    fi
    labels+=("$label")
    files+=("$file")
done

# The test names of every summary, in order, without duplicates.
tests=$(for file in "${files[@]}"; do
    [ -z "$file" ] || awk '!/^#/ && !/^    / { print $1 }' "$file"
done | awk '!seen[$0]++')

# Prints the cell of TEST in summary FILE.
cell() {
    [ -n "$2" ] || { echo "not yet measured"; return; }
    awk -v test="$1" '$1 == test && !/^#/ { printf "%s %d/%d", $2, $3, $3 + $4 + $5; found = 1 }
        END { if (!found) printf "not run" }' "$2"
}

printf '| test |'
printf ' %s |' "${labels[@]}"
printf '\n|---|'
for _ in "${labels[@]}"; do printf -- '---|'; done
printf '\n'

for test in $tests; do
    printf '| %s |' "$test"
    for file in "${files[@]}"; do
        printf ' %s |' "$(cell "$test" "$file")"
    done
    printf '\n'
done

printf '| **passing tests** |'
for file in "${files[@]}"; do
    if [ -z "$file" ]; then
        printf ' not yet measured |'
    else
        printf ' **%s of %s** |' "$(awk '!/^#/ && $2 == "pass"' "$file" | wc -l)" \
            "$(awk '!/^#/ && !/^    /' "$file" | wc -l)"
    fi
done
printf '\n'

for i in "${!labels[@]}"; do
    [ -n "${files[$i]}" ] || continue
    printf '\n### %s: reasons\n\n' "${labels[$i]}"
    awk '!/^#/ && !/^    / { test = $1; status = $2; next }
        /^    / && status != "pass" { sub(/^    /, ""); gsub(/`/, "'"'"'"); printf "- `%s` %s: %s\n", test, status, $0 }' \
        "${files[$i]}"
done

#!/usr/bin/env bash
# ctest man_pages: the generated man pages (packaging/gen_docs.py) render
# without groff warnings, and each usmc-SUB(1) lists exactly the options
# `usmc SUB --help` declares; the bash completion completes them.
#   man_help_test.sh USMC GEN_DIR SOURCE_DIR
set -euo pipefail
usmc=$1 gen=$2 src=$3
d=$(mktemp -d /tmp/usmc-man-XXXXXX)
trap 'rm -rf "$d"' EXIT
for page in "$gen"/man1/*.1.gz "$gen"/man5/usmc.conf.5.gz; do
  w=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1)
  [ -z "$w" ] || { echo "$page: groff warns: $w"; exit 1; }
done
subs=$("$usmc" --help | awk '/^Subcommands:/{s=1;next} s&&/^  [a-z]/{print $1}')
for sub in $subs; do
  "$usmc" "$sub" --help > "$d/help.txt"
  python3 "$src/packaging/gen_docs.py" --options-of-help "$d/help.txt" > "$d/help.opts"
  [ -s "$d/help.opts" ] || { echo "usmc $sub --help: no options found"; exit 1; }
  MANWIDTH=200 man -l "$gen/man1/usmc-$sub.1.gz" 2> /dev/null | col -b |
    awk '/^OPTIONS/{s=1;next} /^[A-Z]/{s=0} s' > "$d/man.txt"
  python3 "$src/packaging/gen_docs.py" --options-of-text "$d/man.txt" > "$d/man.opts"
  diff -u "$d/help.opts" "$d/man.opts" || { echo "usmc-$sub(1) != usmc $sub --help"; exit 1; }
  # Completion offers every option of the subcommand.
  got=$(bash -c '. "$1"; COMP_WORDS=(usmc "$2" -); COMP_CWORD=2; _usmc; printf "%s\n" "${COMPREPLY[@]}" | sort' _ \
    "$gen/usmc.bash-completion" "$sub")
  diff -u "$d/help.opts" <(echo "$got") || { echo "completion of usmc $sub -"; exit 1; }
done
echo "man pages ok: $subs"

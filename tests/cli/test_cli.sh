#!/usr/bin/env bash
# test_cli.sh — the command surface: every subcommand answers --help with exit 0, unknown
# commands and options are usage errors (exit 2).
set -u
fail=0
check() { # expected-code description command...
  local want=$1 what=$2; shift 2
  "$@" >/tmp/v3cli.$$ 2>&1
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; sed 's/^/    /' /tmp/v3cli.$$ | head -5; fail=$((fail+1))
  else
    echo "ok: $what"
  fi
}
check 0 "top-level --help" "$V3TUNE" --help
check 2 "no command" "$V3TUNE"
check 2 "unknown command" "$V3TUNE" frobnicate
cmds=$("$V3TUNE" --help | awk '/^commands:/{on=1;next} on && NF==0{on=0} on{print $1}')
[ -n "$cmds" ] || { echo "FAIL: no commands listed"; fail=$((fail+1)); }
for c in $cmds; do
  check 0 "$c --help" "$V3TUNE" "$c" --help
  "$V3TUNE" "$c" --help | grep -qi "usage" || { echo "FAIL: $c --help prints no usage"; fail=$((fail+1)); }
done
check 2 "init unknown option" "$V3TUNE" init --bogus
check 2 "init missing --out" "$V3TUNE" init --preset tiny
check 2 "init bad dtype" "$V3TUNE" init --preset tiny --out /tmp/x$$ --dtype f8
check 2 "inspect no dir" "$V3TUNE" inspect
check 1 "inspect missing dir" "$V3TUNE" inspect /nonexistent/model
rm -f /tmp/v3cli.$$
echo "cli: $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# fuzz-one.sh GO PKG TARGET FUZZTIME: fuzz one target. Go 1.26's fuzz
# coordinator can end a duration-bounded run with a bare "context deadline
# exceeded" at the -fuzztime boundary although nothing was found
# (golang/go#75804, fixed in Go 1.27). Such a run, and only such a run (no
# reproducer written, no other failure line), is run once more; any real
# finding fails at once.
set -uo pipefail
go=$1 pkg=$2 target=$3 fuzztime=$4
for try in 1 2; do
  out=$("$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [ $rc -eq 0 ] && exit 0
  if [ $try -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" &&
     ! grep -Eq 'Failing input written|panic:|_test\.go:[0-9]+:' <<<"$out"; then
    echo "fuzz $pkg $target: the Go fuzz coordinator's deadline race (golang/go#75804), nothing found; running it once more"
    continue
  fi
  exit $rc
done
exit 1

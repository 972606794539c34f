#!/usr/bin/env bash
# Mutation checks: for each safety invariant, remove the code that guards it in a scratch copy
# of HEAD (never in the work tree); the property tests must then fail (mutation 9: the
# directory's, props_directory; mutation 5: props_history; mutation 10: mirror_switch). Prints CAUGHT / NOT CAUGHT
# per mutation. MUTATIONS="2 6" runs a subset. Takes about 10 minutes on 2 cores.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d)}
rm -rf "$WORK/tree" && mkdir -p "$WORK/tree"
cd "$REPO" && git archive HEAD | tar -x -C "$WORK/tree"
cd "$WORK/tree"
export CARGO_TARGET_DIR="$WORK/target" RUST_BACKTRACE=0 CMS_FAILOVER_PROPTEST_CASES=3000
rm -rf "$WORK/machine.orig"; cp -r failover-core/src/machine "$WORK/machine.orig"; cp failover-core/src/driver.rs "$WORK/driver.orig"
for m in ${MUTATIONS:-1 2 3 4 5 6 7 8 9 10}; do
  rm -rf failover-core/src/machine; cp -r "$WORK/machine.orig" failover-core/src/machine; cp "$WORK/driver.orig" failover-core/src/driver.rs
  python3 "$REPO/scripts/mutate.py" $m || { echo "mutation $m: did not apply"; continue; }
  # Mutation 9 (the directory as the commit point) is caught by the directory properties,
  # mutation 5 (restore follows the directory / the records) by the multi-run histories:
  # a single run cannot tell which store a later restore must keep.
  # Mutation 10 (promote a forced mirror before it serves) by the forced-switch sweep.
  test=props_fake; [ "$m" = 9 ] && test=props_directory; [ "$m" = 5 ] && test=props_history
  [ "$m" = 10 ] && test=mirror_switch
  out=$(cargo test -p failover-testkit --test $test 2>&1)
  if echo "$out" | grep -q "test result: FAILED"; then
    echo "mutation $m: CAUGHT: $(echo "$out" | grep -m1 -E 'Test failed|panicked' | cut -c1-300)"
  elif echo "$out" | grep -q "test result: ok"; then
    echo "mutation $m: NOT CAUGHT"
  else
    echo "mutation $m: BUILD FAILED: $(echo "$out" | grep -m1 -A3 '^error')"
  fi
done

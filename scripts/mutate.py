# One mutation per safety invariant of failover-testkit/src/props.rs: removes the code that
# guards it (in a scratch copy made by scripts/mutation-check.sh). Also disables the
# transition-table assertion so that the invariant checks, not the table, must catch it.
import re, sys
m = int(sys.argv[1])
M = 'failover-core/src/machine/'
files = {f: open(M + f).read() for f in ['mod.rs', 'promote.rs', 'commit.rs', 'replication.rs',
                                          'undo.rs', 'restore.rs', 'lock.rs', 'switch.rs']}
dp = 'failover-core/src/driver.rs'
d = open(dp).read()
def must(cond):
    if not cond: sys.exit(1)
def sub(f, old, new, count=1):
    must(old in files[f]); files[f] = files[f].replace(old, new, count)
if m == 1:  # inv 1: re-fence the target before undoing the source's fence
    n = 0
    for f in ['promote.rs', 'commit.rs']:
        files[f], k = re.subn(r'State::UndoingPromotion \{(\s*)run,', r'State::UndoingFence {\1run,', files[f])
        n += k
    must(n > 0)
elif m == 2:  # inv 2: wait for the target to reach the fenced positions
    s = files['replication.rs']
    old = re.search(r'State::AwaitingCatchUp \{\s*run,\s*fenced,\s*deadline: now \+ ctx\.req\.settings\.catch_up_timeout,?\s*\}', s); must(old)
    files['replication.rs'] = s.replace(old.group(0), 'promote(run)')
elif m == 3:  # inv 3: undo the fence (and confirm it) after a failure
    s = files['undo.rs']
    i = s.index('pub(super) fn enter_undoing_fence'); j = s.index('.collect();', i)
    files['undo.rs'] = s[:j] + '.take(0).collect();' + s[j+len('.collect();'):]
    sub('undo.rs', 'if !still.is_empty() {', 'if false {')
elif m == 4:  # inv 4: what-if executes no change
    a = 'let executed = !what_if || batch.ops.iter().any(Op::is_dry_run_safe);'; b = 'if what_if && !op.is_dry_run_safe() {'
    must(a in d and b in d); d = d.replace(a, 'let executed = true;').replace(b, 'if false {')
elif m == 5:  # inv 5: restore follows the directory (the SQL record when there is none)
    sub('restore.rs', 'let (followed, other) = if directory.points_at(&topo.backup) {',
        'let (followed, other) = if false {')
    sub('restore.rs', 'let (recorded, other) = match obs.recorded_active() {',
        'let (recorded, other) = match None::<&crate::server::LocationRecord> {')
elif m == 6:  # inv 6: a lock held elsewhere refuses the run
    sub('lock.rs', 'Ok(_) => self.holders.push(instance.clone()),',
        'Ok(_) => self.granted.push(instance.clone()),')
    # ...and the re-check before the fence, which also guards it
    sub('lock.rs', '.filter(|(_, r)| !matches!(r, Ok(OpResult::LockHeld(true))))', '.filter(|(_, _r)| false)')
elif m == 7:  # inv 7: the data-loss estimate
    s = files['replication.rs']
    old = '(Some(s), Some(t)) => Some(t.lag_behind(s)),'
    i = s.index('changes_at_risk: match (s, t) {'); j = s.index(old, i)
    files['replication.rs'] = s[:j] + '(Some(_), Some(_)) => Some(0),' + s[j+len(old):]
elif m == 8:  # inv 8: the outcome says what happened
    sub('undo.rs', 'Cause::Failed(failure) => Outcome::rolled_back(failure),',
        'Cause::Failed(_) => Outcome::Succeeded { active: run.plan.target.clone(), epoch: None },')
elif m == 9:  # the directory: a swap read back without the new value is not a commit
    sub('commit.rs', 'Some(Ok(OpResult::Directory(v))) if v == new_value(&run) && !proves_nothing => {',
        'Some(Ok(OpResult::Directory(_))) => {')
elif m == 10:  # a forced mirror is promoted only once it serves (the force completes later)
    sub('promote.rs', 'super::switch::start_forced(ctx, run, mirror, None, now)',
        '{ let _ = now; run.plan.target = mirror; promote(run) }')
# let the invariants, not the table, catch it
sub('mod.rs', 'is_legal(from, to),', 'true || is_legal(from, to),')
for f, s in files.items():
    open(M + f, 'w').write(s)
open(dp, 'w').write(d)

/**
 * Versions only grow (issue 11): for one record, an operation that starts after another one ended must
 * see a version at least as high (a read), or answer a higher one (a write). The linearizability
 * checker sees values, not versions, and a version handed out twice only shows there when a
 * compare-and-set happens to name the reused number; this check sees every regression directly.
 */

export interface VersionObservation {
  key: string;
  /** The version read (0: no record) or the one a write answered. */
  version: number;
  write: boolean;
  call: number;
  ret: number;
}

/** Regressions in real-time order, described (at most `limit`); pure. */
export function versionRegressions(obs: readonly VersionObservation[], limit = 10): { count: number; examples: string[] } {
  const byKey = new Map<string, VersionObservation[]>();
  for (const o of obs) {
    let list = byKey.get(o.key);
    if (list === undefined) byKey.set(o.key, (list = []));
    list.push(o);
  }
  let count = 0;
  const examples: string[] = [];
  for (const [key, list] of byKey) {
    const byRet = [...list].sort((a, b) => a.ret - b.ret);
    const byCall = [...list].sort((a, b) => a.call - b.call);
    // Sweep by call time: `best` is the highest version among operations that ended before this one began.
    let i = 0;
    let best: VersionObservation | null = null;
    for (const op of byCall) {
      while (i < byRet.length && byRet[i]!.ret < op.call) {
        if (best === null || byRet[i]!.version > best.version) best = byRet[i]!;
        i++;
      }
      if (best === null) continue;
      const bad = op.write ? op.version <= best.version : op.version < best.version;
      if (!bad) continue;
      count++;
      if (examples.length < limit) {
        examples.push(`${key}: ${op.write ? "write answered" : "read saw"} version ${op.version} at [${op.call}, ${op.ret}] after ${best.write ? "a write answered" : "a read saw"} ${best.version} at [${best.call}, ${best.ret}]`);
      }
    }
  }
  return { count, examples };
}

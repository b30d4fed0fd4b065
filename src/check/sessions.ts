/**
 * The session guarantees' checker (DATA-4): read-your-writes and monotonic reads. A session's
 * operations run one after another; each acknowledged write of a key, and each read of it, raises the
 * least version the session may see of that key from then on. A read below it went back in time.
 * Writes whose outcome is unknown raise nothing (they may not have happened), and reads that failed say
 * nothing. Versions of a record only grow (node/shard-apply.ts), so "not older" is "version not lower";
 * a record that is absent reads as version 0.
 */

export interface SessionOp {
  session: number;
  kind: "write" | "read";
  key: string;
  /** An acknowledged write's version, a read's answer (0: the record was absent). */
  version: number;
  /** Which node answered, for the report. */
  node: number;
  /** When the operation ended (ms since the run began), for the report. */
  atMs: number;
}

export interface SessionVerdict {
  /** Reads checked. */
  reads: number;
  violations: number;
  /** The first few violations, in words. */
  examples: string[];
}

/** Checks each session's operations, in the order the session completed them. */
export function checkSessions(ops: readonly SessionOp[], examplesMax = 10): SessionVerdict {
  const floors = new Map<number, Map<string, { version: number; what: string }>>();
  let reads = 0;
  let violations = 0;
  const examples: string[] = [];
  for (const op of ops) {
    let seen = floors.get(op.session);
    if (seen === undefined) floors.set(op.session, (seen = new Map()));
    const floor = seen.get(op.key);
    if (op.kind === "read") {
      reads++;
      if (floor !== undefined && op.version < floor.version) {
        violations++;
        if (examples.length < examplesMax) {
          examples.push(`session ${op.session}: a read of ${op.key} on node ${op.node} at ${op.atMs.toFixed(0)} ms saw version ${op.version} after ${floor.what}`);
        }
        continue;
      }
    }
    if (floor === undefined || op.version > floor.version) {
      seen.set(op.key, { version: op.version, what: `${op.kind === "write" ? "its write got" : "it read"} version ${op.version} on node ${op.node} at ${op.atMs.toFixed(0)} ms` });
    }
  }
  return { reads, violations, examples };
}

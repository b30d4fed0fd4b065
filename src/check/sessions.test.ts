import { test } from "node:test";
import assert from "node:assert/strict";
import { type SessionOp, checkSessions } from "./sessions.js";

const op = (session: number, kind: SessionOp["kind"], key: string, version: number, atMs = 0): SessionOp => ({ session, kind, key, version, node: 1, atMs });

test("a session that sees its writes and never goes back passes; other sessions' reads are not held to them", () => {
  const v = checkSessions([
    op(1, "write", "a", 5), op(1, "read", "a", 5), op(1, "read", "a", 9),
    op(2, "read", "a", 0), // another session need not see session 1's write
    op(1, "read", "b", 0), op(1, "read", "b", 3), op(1, "write", "b", 4), op(1, "read", "b", 7),
  ]);
  assert.deepEqual([v.reads, v.violations], [6, 0]);
});

test("a read that misses the session's own write is flagged (read-your-writes)", () => {
  const v = checkSessions([op(1, "write", "a", 5, 10), op(1, "read", "a", 0, 20)]);
  assert.equal(v.violations, 1);
  assert.match(v.examples[0]!, /session 1: a read of a on node 1 at 20 ms saw version 0 after its write got version 5/);
});

test("a read older than an earlier read is flagged (monotonic reads), per key", () => {
  const v = checkSessions([op(3, "read", "a", 8), op(3, "read", "b", 1), op(3, "read", "a", 7), op(3, "read", "a", 8)]);
  assert.equal(v.violations, 1);
  assert.match(v.examples[0]!, /saw version 7 after it read version 8/);
});

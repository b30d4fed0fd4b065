import { test } from "node:test";
import assert from "node:assert/strict";
import { versionRegressions } from "./versions.js";

test("versions only grow: a lower version after an operation that ended earlier is a regression; overlapping ones are not", () => {
  const w = (version: number, call: number, ret: number) => ({ key: "a", version, write: true, call, ret });
  const r = (version: number, call: number, ret: number) => ({ key: "a", version, write: false, call, ret });
  assert.equal(versionRegressions([w(10, 0, 5), r(10, 6, 7), w(11, 8, 9)]).count, 0);
  // Concurrent operations may be seen in either order.
  assert.equal(versionRegressions([w(10, 0, 5), r(9, 1, 7)]).count, 0);
  // A split child that restarted the version count (the bug of issue 11).
  const old = versionRegressions([w(108, 0, 5), w(7, 6, 9), r(7, 10, 11)]);
  assert.equal(old.count, 2);
  assert.match(old.examples[0]!, /write answered version 7 .* after a write answered 108/);
  // A write must answer a version above everything seen before it; a read may see the same one again.
  assert.equal(versionRegressions([r(10, 0, 1), w(10, 2, 3)]).count, 1);
  // Keys are independent.
  assert.equal(versionRegressions([w(50, 0, 1), { key: "b", version: 3, write: true, call: 2, ret: 3 }]).count, 0);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { INLINE_SYNC_INPUTS_MAX, INLINE_SYNC_MS_MAX, inlineSync } from "./multi-raft-turn.js";

test("a turn syncs its WAL batch on the loop's thread only when it took few inputs and the disk was quick", () => {
  // A lone write, or a follower's append: on the loop's thread.
  assert.equal(inlineSync(1, 0.3), true);
  assert.equal(inlineSync(INLINE_SYNC_INPUTS_MAX, INLINE_SYNC_MS_MAX), true);
  // A busy turn: its sync goes through the thread pool, so the loop parses what arrives meanwhile.
  assert.equal(inlineSync(INLINE_SYNC_INPUTS_MAX + 1, 0.3), false);
  // A slow disk: through the thread pool, so health checks and metrics are answered while it syncs.
  assert.equal(inlineSync(1, INLINE_SYNC_MS_MAX + 1), false);
});

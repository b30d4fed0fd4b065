/**
 * Test helper process: installs snapshots of group 1 into the state store at argv[2] over and over
 * (version v: RECORDS records all holding v, applied index v), printing "installed v" after each.
 * The crash test kills it with SIGKILL mid-install.
 */
import { StateStore } from "../state-store.js";
import { encodeSnapshot } from "../snapshot-frames.js";

export const RECORDS = 3000;
const store = StateStore.open({ path: process.argv[2]!, snapshotFrameRecords: 256 });
for (let v = store.applied(1) + 1; ; v++) {
  const pairs = Array.from({ length: RECORDS }, (_, i) => [`k${i}`, { v, pad: "x".repeat(64) }] as [string, unknown]);
  await store.installSnapshot(1, v, 1, encodeSnapshot(v, pairs, 256));
  process.stdout.write(`installed ${v}\n`);
}

/**
 * The apply step of one replica, in process: what a record put costs a replica with and without an
 * idempotency key (the key's outcome is stored, and the oldest forgotten), and how long a split of the
 * shard blocks the loop afterwards: its entry in the apply step, then each part of its fill (the host moves
 * the child's records a part a turn: node/split-fill.ts). No network, no Raft: entries go through `applyShardEntries` into a
 * real state store (LMDB in a temporary directory), in batches as a loop turn applies them. Plain puts
 * are the reference, measured in the same run.
 *
 *   npm run bench:apply -- [--puts 200000] [--records 10000] [--batch 16] [--rounds 2] [--value-bytes 240]
 *
 * A keyed run first writes enough puts to fill the shard's queue of remembered outcomes (its limit is the
 * default idempotencyKeysPerShardMax), so that every measured put also forgets one, as in a long run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { StateStore, type ShardState } from "../src/storage/state-store.js";
import { type ShardReader, applyShardEntries } from "../src/node/shard-apply.js";
import { SPLIT_FILL_KEYS_PER_TURN, type SplitFill, fillPart } from "../src/node/split-fill.js";
import { type RecordCommand, encodeProposal } from "../src/node/records.js";
import { RECORDS_END, RememberedQueue } from "../src/node/idempotency.js";
import { type ConfState, type Entry, EntryType } from "../src/raft/index.js";
import { DEFAULT_PLACEMENT } from "../src/placement/types.js";

const args = process.argv.slice(2);
function arg(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${args[i + 1]}`);
  return v;
}
const puts = arg("puts", 200_000);
const records = arg("records", 10_000);
const batch = arg("batch", 16);
const rounds = arg("rounds", 2);
const valueBytes = arg("value-bytes", 240);
const keysMax = DEFAULT_PLACEMENT.idempotencyKeysPerShardMax;
const ttlMs = DEFAULT_PLACEMENT.idempotencyKeyTtlMs;
const conf: ConfState = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
const GROUP = 7;

interface Result { putCpuUs: number; putWallUs: number; splitApplyMs: number; partMsMax: number; fillMs: number; parts: number; moved: number; outcomes: number }

async function run(keyed: boolean): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-apply-"));
  const store = StateStore.open({ path: dir });
  try {
    let shard: ShardState = { range: { start: 0, end: 2 ** 32 }, splits: [], versionBase: 0 };
    store.apply([{ group: GROUP, appliedIndex: 0, shard }]);
    let queue: RememberedQueue | null = null;
    const reader: ShardReader = {
      get: (k) => store.get(GROUP, k),
      remembered: () => (queue ??= RememberedQueue.from(store.scan(GROUP, Number.MAX_SAFE_INTEGER, RECORDS_END))),
      pendingFills: () => [],
      packed: (pick) => store.packed(GROUP, pick),
    };
    const payload = "v".repeat(valueBytes);
    let index = 0;
    const apply = (entries: Entry[]) => {
      const out = applyShardEntries(GROUP, entries, shard, reader, () => conf, () => conf);
      shard = out.shard;
      store.apply(out.changes, out.sizeBytes);
      store.commitIfDue(performance.now());
      return out;
    };
    const putBatches = (n: number) => {
      for (let done = 0; done < n; done += batch) {
        const entries: Entry[] = [];
        for (let i = 0; i < batch; i++) {
          index++;
          const cmd: RecordCommand = { op: "put", key: `r${(index * 7919) % records}`, payload: { v: payload, n: index } };
          if (keyed) cmd.idem = { key: randomUUID(), fingerprint: "0123456789abcdefghijkl", atMs: 1e12 + index, ttlMs, keysMax };
          entries.push({ term: 1, index, type: EntryType.Normal, data: encodeProposal({ origin: [1, index], cmd }) });
        }
        apply(entries);
      }
    };
    // Every record written, and (keyed) the queue full: the steady state of a long run.
    putBatches(keyed ? keysMax + records : records);
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    putBatches(puts);
    const cpu = process.cpuUsage(cpu0);
    const wallMs = performance.now() - wall0;
    index++;
    const split: Entry = { term: 1, index, type: EntryType.Normal, data: encodeProposal({ origin: [1, index], cmd: { op: "split", at: 2 ** 31, child: GROUP + 1 } }) };
    const t0 = performance.now();
    const out = applyShardEntries(GROUP, [split], shard, reader, () => conf, () => conf);
    store.apply(out.changes, out.sizeBytes);
    const splitApplyMs = performance.now() - t0;
    // The host's fill (node/split-fill.ts): what the split left under the parent moves a part a turn,
    // after the store committed what was staged before the split.
    const { child, range } = out.children[0]!;
    await store.flushed();
    const fill: SplitFill = { child, parent: GROUP, range, remembered: null, cursor: undefined, started: true, commitAwaited: false, keysMoved: 0, parts: 0, startedAtMs: 0 };
    let partMsMax = 0;
    let fillMs = 0;
    for (let done = false; !done;) {
      const p0 = performance.now();
      const part = fillPart(store, fill, SPLIT_FILL_KEYS_PER_TURN);
      store.apply(part.changes);
      store.commitIfDue(performance.now());
      const ms = performance.now() - p0;
      partMsMax = Math.max(partMsMax, ms);
      fillMs += ms;
      done = part.done;
    }
    return {
      putCpuUs: (cpu.user + cpu.system) / puts, putWallUs: (1000 * wallMs) / puts, splitApplyMs, partMsMax, fillMs, parts: fill.parts,
      moved: fill.keysMoved, outcomes: out.children[0]!.remembered.size + reader.remembered().size,
    };
  } finally {
    void store.close().then(() => rmSync(dir, { recursive: true, force: true }));
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = { plain: [] as Result[], keyed: [] as Result[] };
for (let round = 1; round <= rounds; round++) {
  for (const kind of ["plain", "keyed"] as const) {
    const r = await run(kind === "keyed");
    results[kind].push(r);
    console.log(`  round ${round}, ${kind}: ${r.putCpuUs.toFixed(1)} µs CPU a put, split entry ${r.splitApplyMs.toFixed(1)} ms, fill ${r.fillMs.toFixed(0)} ms in ${r.parts} parts (longest ${r.partMsMax.toFixed(1)} ms), ${r.moved} entries moved`);
  }
}
const row = (kind: "plain" | "keyed") => {
  const rs = results[kind];
  const m = (f: (r: Result) => number) => median(rs.map(f));
  return {
    cpu: m((r) => r.putCpuUs), wall: m((r) => r.putWallUs), splitEntry: m((r) => r.splitApplyMs), partMax: m((r) => r.partMsMax), fill: m((r) => r.fillMs),
    parts: rs[0]!.parts, moved: rs[0]!.moved, outcomes: rs[0]!.outcomes,
  };
};
const plain = row("plain");
const keyed = row("keyed");
console.log(`\nOne replica's apply step: ${puts.toLocaleString("en-US")} puts over ${records.toLocaleString("en-US")} records, ${batch} a turn, ${valueBytes}-byte values; medians of ${rounds} round(s)`);
console.log(`A split's fill moves ${SPLIT_FILL_KEYS_PER_TURN} keys walked a turn; "whole move" is the sum of its parts, what one step moving everything at once blocks (the reference)\n`);
console.log("| puts | CPU µs / put | wall µs / put | split entry, ms | longest fill part, ms | whole move, ms | parts | longest block / whole move | entries moved | outcomes remembered |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const [label, r] of [["plain (reference)", plain], ["with idempotency keys", keyed]] as const) {
  const block = Math.max(r.splitEntry, r.partMax);
  console.log(`| ${label} | ${r.cpu.toFixed(1)} | ${r.wall.toFixed(1)} | ${r.splitEntry.toFixed(1)} | ${r.partMax.toFixed(1)} | ${r.fill.toFixed(0)} | ${r.parts} | ${(block / (r.splitEntry + r.fill)).toFixed(2)} | ${r.moved.toLocaleString("en-US")} | ${r.outcomes.toLocaleString("en-US")} |`);
}
console.log(`\nkeyed / plain: CPU a put ${(keyed.cpu / plain.cpu).toFixed(2)}x`);

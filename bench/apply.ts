/**
 * The apply step of one replica, in process: what a record put costs a replica with and without an
 * idempotency key (the key's outcome is stored, and the oldest forgotten), and how long a split of the
 * shard blocks the loop afterwards. No network, no Raft: entries go through `applyShardEntries` into a
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

interface Result { putCpuUs: number; putWallUs: number; splitApplyMs: number; splitStageMs: number; moved: number; outcomes: number }

function run(keyed: boolean): Result {
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-apply-"));
  const store = StateStore.open({ path: dir });
  try {
    let shard: ShardState = { range: { start: 0, end: 2 ** 32 }, splits: [], versionBase: 0 };
    store.apply([{ group: GROUP, appliedIndex: 0, shard }]);
    let queue: RememberedQueue | null = null;
    const reader: ShardReader = {
      get: (k) => store.get(GROUP, k),
      packed: (pick) => store.packed(GROUP, pick),
      remembered: () => (queue ??= RememberedQueue.from(store.scan(GROUP, Number.MAX_SAFE_INTEGER, RECORDS_END))),
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
    const t1 = performance.now();
    store.apply(out.changes, out.sizeBytes);
    const t2 = performance.now();
    const child = out.changes[1]!;
    return {
      putCpuUs: (cpu.user + cpu.system) / puts, putWallUs: (1000 * wallMs) / puts, splitApplyMs: t1 - t0, splitStageMs: t2 - t1,
      moved: (child.puts?.length ?? 0) + (child.packedPuts?.length ?? 0), outcomes: out.children[0]!.remembered.size + reader.remembered().size,
    };
  } finally {
    void store.close().then(() => rmSync(dir, { recursive: true, force: true }));
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = { plain: [] as Result[], keyed: [] as Result[] };
for (let round = 1; round <= rounds; round++) {
  for (const kind of ["plain", "keyed"] as const) {
    const r = run(kind === "keyed");
    results[kind].push(r);
    console.log(`  round ${round}, ${kind}: ${r.putCpuUs.toFixed(1)} µs CPU a put, split ${r.splitApplyMs.toFixed(0)} + ${r.splitStageMs.toFixed(0)} ms (${r.moved} entries moved)`);
  }
}
const row = (kind: "plain" | "keyed") => {
  const rs = results[kind];
  const m = (f: (r: Result) => number) => median(rs.map(f));
  return { cpu: m((r) => r.putCpuUs), wall: m((r) => r.putWallUs), split: m((r) => r.splitApplyMs + r.splitStageMs), moved: rs[0]!.moved, outcomes: rs[0]!.outcomes };
};
const plain = row("plain");
const keyed = row("keyed");
console.log(`\nOne replica's apply step: ${puts.toLocaleString("en-US")} puts over ${records.toLocaleString("en-US")} records, ${batch} a turn, ${valueBytes}-byte values; medians of ${rounds} round(s)\n`);
console.log("| puts | CPU µs / put | wall µs / put | split blocks the loop, ms | entries the split moves | outcomes remembered |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const [label, r] of [["plain (reference)", plain], ["with idempotency keys", keyed]] as const) {
  console.log(`| ${label} | ${r.cpu.toFixed(1)} | ${r.wall.toFixed(1)} | ${r.split.toFixed(0)} | ${r.moved.toLocaleString("en-US")} | ${r.outcomes.toLocaleString("en-US")} |`);
}
console.log(`\nkeyed / plain: CPU a put ${(keyed.cpu / plain.cpu).toFixed(2)}x, split ${(keyed.split / plain.split).toFixed(2)}x`);

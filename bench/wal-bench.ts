/**
 * Write-ahead log throughput next to the physical floor of the same disk, measured in the same run:
 *   floor: a loop of (write 4 KiB at the end of a file, fdatasync) — the most durable batches per second
 *          the disk gives one writer;
 *   WAL:   Wal.append of one loop turn's batch (entries of several groups + their hard states) — one
 *          write and one fdatasync per batch (group commit).
 * The ratio WAL batches/s ÷ floor syncs/s shows what the log adds on top of the fsync itself.
 *
 *   npm run bench:wal [-- --seconds 3 --dir PATH]
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EntryType } from "../src/raft/index.js";
import { Wal } from "../src/storage/wal.js";
import type { WalRecord } from "../src/storage/wal-record.js";

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const SECONDS = Number(arg("seconds", "3"));
const BASE = arg("dir", process.env.SHOAL_BENCH_DIR ?? tmpdir());

function floor(dir: string): number {
  const fd = openSync(join(dir, "floor.bin"), "a");
  const block = Buffer.alloc(4096, 7);
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  let n = 0;
  while (performance.now() < deadline) {
    writeSync(fd, block);
    fdatasyncSync(fd);
    n++;
  }
  closeSync(fd);
  return n / ((performance.now() - started) / 1000);
}

async function wal(dir: string, groups: number, entriesPerGroup: number, entryBytes: number): Promise<{ batches: number; entries: number; mb: number }> {
  const { wal } = await Wal.open({ dir: join(dir, `wal-${groups}-${entriesPerGroup}-${entryBytes}`) });
  const data = new Uint8Array(entryBytes).fill(3);
  const next = new Map<number, number>();
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  let batches = 0;
  let bytes = 0;
  while (performance.now() < deadline) {
    const batch: WalRecord[] = [];
    for (let g = 1; g <= groups; g++) {
      const first = (next.get(g) ?? 0) + 1;
      next.set(g, first + entriesPerGroup - 1);
      batch.push({
        kind: "entries", group: g,
        entries: Array.from({ length: entriesPerGroup }, (_, i) => ({ term: 1, index: first + i, type: EntryType.Normal, data })),
      });
      batch.push({ kind: "hard-state", group: g, hardState: { term: 1, vote: 1, commit: first - 1 } });
    }
    await wal.append(batch);
    batches++;
    bytes += groups * entriesPerGroup * entryBytes;
  }
  await wal.close();
  const secs = (performance.now() - started) / 1000;
  return { batches: batches / secs, entries: (batches * groups * entriesPerGroup) / secs, mb: bytes / secs / 1e6 };
}

const dir = mkdtempSync(join(BASE, "shoal-wal-bench-"));
try {
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const floorRate = floor(dir);
  console.log(`WAL vs raw fdatasync on ${BASE}, ${SECONDS} s per row (node ${process.version})`);
  console.log("");
  console.log("| workload | durable batches/s | entries/s | payload MB/s | ratio to floor (batches/s ÷ syncs/s) |");
  console.log("|---|---:|---:|---:|---:|");
  console.log(`| floor: 4 KiB write + fdatasync | ${fmt(floorRate)} | – | – | 1.000 |`);
  for (const [groups, per, size] of [[1, 1, 256], [8, 8, 256], [64, 4, 256], [8, 64, 256]] as const) {
    const r = await wal(dir, groups, per, size);
    console.log(`| WAL: ${groups} group(s) × ${per} entries × ${size} B | ${fmt(r.batches)} | ${fmt(r.entries)} | ${r.mb.toFixed(1)} | ${(r.batches / floorRate).toFixed(3)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * What the benchmarks that run real `shoal start` processes share beyond chaos/cluster.ts's ProcCluster
 * (which starts, kills and restarts them): the command line's integer flags, percentiles, a process's
 * CPU and memory from /proc, cleanup on exit and on SIGINT/SIGTERM, and a client loop.
 */
import { readFileSync } from "node:fs";
import { type ProcCluster, waitUntil } from "../src/chaos/cluster.js";

/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ: 100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Nearest-rank percentile of ascending `sorted` (NaN for none). */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

/** A named integer flag of the command line (`--name value`), checked against [min, max]. */
export function intArg(args: readonly string[], name: string, dflt: number, min: number, max: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer in ${min}..${max}, got ${args[i + 1]}`);
  return v;
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Resident memory of the process, in MiB. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

/** No process or directory of the cluster outlives the benchmark, also on Ctrl-C. */
export function abandonOnExit(c: ProcCluster): void {
  process.once("exit", () => c.abandonSync());
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      c.abandonSync();
      process.exit(130);
    });
  }
}

/** A client that runs `once` again and again, one call at a time, from start() until stop(). */
export abstract class ClientLoop {
  private running = true;
  private loop: Promise<void> | null = null;

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  protected abstract once(): Promise<void>;

  private async run(): Promise<void> {
    while (this.running) await this.once();
  }
}

/** A shard as `/v1/cluster/shards` lists it. */
export interface ShardView {
  shard: number;
  collection: string;
  replicas: { node: number; role: string }[];
  leader: number;
  /** When (wall-clock ms) the answering node learned of that leader; null if it knows none. */
  leaderSinceMs: number | null;
}

/** The shards of `collection` once every one of them has a leader (node 1's shard map). */
export async function ledShards(c: ProcCluster, collection: string, timeoutMs = 30_000): Promise<ShardView[]> {
  let found: ShardView[] = [];
  await waitUntil(`a leader for every shard of ${collection}`, async () => {
    found = (await c.api<{ shards: ShardView[] }>(1, "GET", "/v1/cluster/shards")).body.shards.filter((v) => v.collection === collection);
    return found.length > 0 && found.every((v) => v.leader !== 0);
  }, timeoutMs, 100);
  return found;
}

/** A node's vector indexes from its /metrics: writes not yet in its graphs, and records in them. */
export async function indexGauges(c: ProcCluster, id: number): Promise<{ pending: number; records: number }> {
  const text = await (await fetch(c.url(id, "/metrics"), { signal: AbortSignal.timeout(5000) })).text();
  const gauge = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  return { pending: gauge("shoal_index_pending_ops"), records: gauge("shoal_index_records") };
}

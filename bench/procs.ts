/**
 * Real `shoal start` processes for benchmarks: ports, start, kill -9, HTTP calls, CPU and memory read
 * from /proc, cleanup of processes and the data directory on exit and on SIGINT/SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const shoal = fileURLToPath(new URL("../../bin/shoal.js", import.meta.url));
/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ: 100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Nearest-rank percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, "127.0.0.1", r))));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** A named integer flag of the command line (`--name value`), checked against [min, max]. */
export function intArg(args: readonly string[], name: string, dflt: number, min: number, max: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer in ${min}..${max}, got ${args[i + 1]}`);
  return v;
}

export interface ProcClusterOptions {
  ids: number[];
  /** Extra flags of every node's `shoal start`. */
  flags: string[];
  env?: Record<string, string>;
  /** Flags of the node processes' Node.js itself (e.g. `--cpu-prof` for a profile of every node). */
  nodeFlags?: string[];
  /** Keep the data directory and logs after the run. */
  keep?: boolean;
  name: string;
}

/** A cluster of `shoal start` processes on this machine, founded by all of `ids`. */
export class ProcCluster {
  readonly dir: string;
  readonly procs = new Map<number, ChildProcess>();
  private readonly httpPort = new Map<number, number>();
  private readonly peerPort = new Map<number, number>();
  private cleaned = false;

  private constructor(private readonly o: ProcClusterOptions) {
    this.dir = mkdtempSync(join(tmpdir(), `shoal-${o.name}-`));
    const cleanup = () => this.cleanup();
    process.once("exit", cleanup);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.once(sig, () => {
        cleanup();
        process.exit(130);
      });
    }
  }

  static async create(o: ProcClusterOptions): Promise<ProcCluster> {
    const c = new ProcCluster(o);
    const ports = await freePorts(2 * o.ids.length);
    o.ids.forEach((id, i) => {
      c.httpPort.set(id, ports[i]!);
      c.peerPort.set(id, ports[o.ids.length + i]!);
    });
    return c;
  }

  get ids(): number[] {
    return this.o.ids;
  }

  start(id: number): void {
    const peers = this.o.ids.filter((p) => p !== id).map((p) => `${p}=127.0.0.1:${this.peerPort.get(p)}`).join(",");
    const child = spawn(process.execPath, [...(this.o.nodeFlags ?? []), shoal, "start", "--id", String(id), "--data-dir", join(this.dir, `n${id}`),
      "--http", `127.0.0.1:${this.httpPort.get(id)}`, "--listen", `127.0.0.1:${this.peerPort.get(id)}`, "--peers", peers, ...this.o.flags],
    { stdio: ["ignore", openSync(join(this.dir, `n${id}.log`), "a"), "inherit"], env: { ...process.env, ...this.o.env } });
    this.procs.set(id, child);
  }

  async kill9(id: number): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    const exited = p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    this.procs.delete(id);
    await exited;
  }

  url(id: number, path: string): string {
    return `http://127.0.0.1:${this.httpPort.get(id)}${path}`;
  }

  async json<T = unknown>(id: number, path: string, init: RequestInit = {}, timeoutMs = 5000): Promise<{ status: number; body: T }> {
    const r = await fetch(this.url(id, path), { signal: AbortSignal.timeout(timeoutMs), ...init });
    return { status: r.status, body: (await r.json().catch(() => null)) as T };
  }

  async ready(id: number): Promise<boolean> {
    try {
      return (await fetch(this.url(id, "/readyz"), { signal: AbortSignal.timeout(2000) })).status === 200;
    } catch {
      return false;
    }
  }

  /** CPU seconds (user + system) a node's process has used so far. */
  cpuSeconds(id: number): number {
    const stat = readFileSync(`/proc/${this.procs.get(id)!.pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  }

  /** Resident memory of a node's process, in MiB. */
  rssMiB(id: number): number {
    const status = readFileSync(`/proc/${this.procs.get(id)!.pid}/status`, "utf8");
    const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return kib / 1024;
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.procs.keys()]) await this.kill9(id);
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const p of this.procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    if (this.o.keep === true) console.error(`kept the nodes' data and logs in ${this.dir}`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface ShardView {
  shard: number;
  replicas: { node: number; role: string }[];
  leader: number;
  /** When (wall-clock ms) the answering node learned of that leader; null if it knows none. */
  leaderSinceMs: number | null;
}

/**
 * A cluster of real `shoal start` processes on loopback for the chaos runner: start, kill -9 and
 * restart, SIGSTOP / SIGCONT, transport faults through the test hook, JSON requests. Kept apart from
 * cli/testing.ts, which registers node:test hooks at import and so cannot be loaded by a plain command.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, copyFileSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NetnsNet } from "./netns.js";

export const SHOAL_BIN = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));

/** How long a control request (status, faults, operators) may take before it counts as unanswered. */
export const CONTROL_TIMEOUT_MS = 5_000;

export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Turns the placement driver's automatic splits and merges off (by load, by size, of small shards)
 * through the node at `endpoint`, so that the shard map changes only when asked: a run whose shard
 * count must not depend on load and timing (chaos runs, benchmarks). `note` says who asked.
 */
export async function keepShardCount(endpoint: string, note: string): Promise<void> {
  const cfg = await fetch(`${endpoint}/v1/cluster/config`, { signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS) });
  if (!cfg.ok) throw new Error(`settings unreadable at ${endpoint}: HTTP ${cfg.status} ${await cfg.text()}`);
  const { version } = await cfg.json() as { version: number };
  const put = await fetch(`${endpoint}/v1/cluster/config`, {
    method: "PUT", headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
    body: JSON.stringify({ baseVersion: version, settings: { mergeBelowRecords: 0, splitRequestRate: 0, splitSizeBytes: 0 }, note }),
  });
  if (!put.ok) throw new Error(`automatic splits and merges could not be turned off: HTTP ${put.status} ${await put.text()}`);
}

/**
 * Waits until every node in `ids` answers GET `readyzUrl(id)` with 200, asking them in turn. A time-out
 * says each node's last answer (no metadata leader, no shard map, a shard without a leader).
 */
export async function awaitReady(ids: number[], readyzUrl: (id: number) => string, timeoutMs: number, pollMs: number): Promise<void> {
  const notReady = new Map<number, string>();
  const answer = async (id: number): Promise<string | null> => {
    try {
      const r = await fetch(readyzUrl(id), { signal: AbortSignal.timeout(2000) });
      const body = await r.text();
      return r.status === 200 ? null : `HTTP ${r.status}: ${body.slice(0, 300)}`;
    } catch (e) {
      return (e as Error).message;
    }
  };
  await waitUntil(`nodes ${ids.join(",")} ready`, async () => {
    for (const id of ids) {
      const why = await answer(id);
      if (why !== null) {
        notReady.set(id, why);
        return false;
      }
      notReady.delete(id);
    }
    return true;
  }, timeoutMs, pollMs).catch((e: Error) => {
    throw new Error(`${e.message}; last answers: ${JSON.stringify(Object.fromEntries(notReady))}`);
  });
}

/** n distinct free ports: all are held open until every one is chosen, so none repeats. */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, "127.0.0.1", r))));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export type NodeState = "up" | "killed" | "paused";

export class ProcCluster {
  readonly ids: number[];
  readonly http = new Map<number, number>();
  readonly peer = new Map<number, number>();
  private readonly procs = new Map<number, ChildProcess>();
  readonly state = new Map<number, NodeState>();
  /** Exits no one here asked for (a node that crashed): a run with one reports it. */
  readonly crashes: string[] = [];
  private readonly killing = new Set<number>();
  private readonly logFds: number[] = [];
  /** Set when every node runs in its own network namespace (the `netns` nemesis). */
  netns: NetnsNet | null = null;

  private constructor(readonly dir: string, size: number, readonly shards: number) {
    this.ids = Array.from({ length: size }, (_, i) => i + 1);
  }

  /**
   * Founds a cluster of `size` test-mode nodes and waits until every one is ready. With `netns` each node
   * runs in a network namespace of its own, on its namespace's address, reached through a bridge.
   */
  static async start(size: number, shards: number, readyTimeoutMs = 60_000, netns = false): Promise<ProcCluster> {
    const c = new ProcCluster(mkdtempSync(join(tmpdir(), "shoal-chaos-")), size, shards);
    // Ctrl-C while the cluster is still starting: nothing of it stays behind.
    const onExit = () => c.abandonSync();
    process.once("exit", onExit);
    try {
      if (netns) {
        c.netns = NetnsNet.setup(c.ids);
        // A namespace's ports are its own: the same two in every one.
        for (const id of c.ids) {
          c.http.set(id, 7480);
          c.peer.set(id, 7481);
        }
      } else {
        const ports = await freePorts(size * 2);
        for (const id of c.ids) {
          c.http.set(id, ports[id - 1]!);
          c.peer.set(id, ports[size + id - 1]!);
        }
      }
      for (const id of c.ids) c.spawnNode(id);
      await c.waitReady(c.ids, readyTimeoutMs);
      return c;
    } catch (e) {
      await c.destroy();
      throw e;
    } finally {
      process.removeListener("exit", onExit);
    }
  }

  /** Where node `id` listens: its namespace's address, or loopback. */
  host(id: number): string {
    return this.netns?.address(id) ?? "127.0.0.1";
  }

  /** The process id of node `id`, while it runs (benchmarks read its CPU and memory). */
  pid(id: number): number | undefined {
    return this.procs.get(id)?.pid;
  }

  url(id: number, path: string): string {
    return `http://${this.host(id)}:${this.http.get(id)}${path}`;
  }

  private spawnNode(id: number): void {
    const peers = this.ids.filter((p) => p !== id).map((p) => `${p}=${this.host(p)}:${this.peer.get(p)}`).join(",");
    // Each node's log (JSON lines) next to its data, appended across restarts.
    const fd = openSync(join(this.dir, `n${id}.log`), "a");
    this.logFds.push(fd);
    const argv = [process.execPath, SHOAL_BIN, "start", "--id", String(id), "--data-dir", join(this.dir, `n${id}`),
      "--http", `${this.host(id)}:${this.http.get(id)}`, "--listen", `${this.host(id)}:${this.peer.get(id)}`, "--peers", peers, "--shards", String(this.shards)];
    // `ip netns exec` execs the node in place: the child's pid is the node's, so SIGKILL and SIGSTOP reach it.
    const [cmd, args] = this.netns === null ? [argv[0]!, argv.slice(1)] : this.netns.wrap(id, argv);
    const child = spawn(cmd, args, { stdio: ["ignore", fd, fd], env: { ...process.env, SHOAL_TEST_MODE: "1" } });
    child.once("exit", (code, signal) => {
      if (!this.killing.has(id)) this.crashes.push(`node ${id} exited by itself (code ${code}, signal ${signal}); its log is kept with a failing run`);
    });
    this.procs.set(id, child);
    this.state.set(id, "up");
  }

  async waitReady(ids: number[], timeoutMs: number): Promise<void> {
    await awaitReady(ids, (id) => this.url(id, "/readyz"), timeoutMs, 50);
  }

  async kill9(id: number): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    const exited = p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once("exit", r));
    this.killing.add(id);
    // A stopped process dies on SIGKILL as well.
    p.kill("SIGKILL");
    await exited;
    this.killing.delete(id);
    this.procs.delete(id);
    this.state.set(id, "killed");
  }

  restart(id: number): void {
    if (this.procs.has(id)) throw new Error(`node ${id} is running`);
    this.spawnNode(id);
  }

  pause(id: number): void {
    this.procs.get(id)?.kill("SIGSTOP");
    this.state.set(id, "paused");
  }

  resume(id: number): void {
    this.procs.get(id)?.kill("SIGCONT");
    this.state.set(id, "up");
  }

  /** Nodes whose process is gone without being killed here: restarted (the crash stays in `crashes`). */
  restartCrashed(): void {
    for (const [id, p] of [...this.procs]) {
      if (p.exitCode === null && p.signalCode === null) continue;
      this.procs.delete(id);
      this.spawnNode(id);
    }
  }

  /** Cuts (or with null heals) the transport links of `id` to `cut`; outbound only, so callers set both ends. */
  async setFaults(id: number, cut: number[] | null): Promise<boolean> {
    try {
      const r = await fetch(this.url(id, "/v1/test/faults"), {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(cut === null ? null : { cut }),
        signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      });
      await r.arrayBuffer();
      return r.status === 200;
    } catch {
      return false;
    }
  }

  async api<T>(id: number, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const r = await fetch(this.url(id, path), {
      method, signal: AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      ...(body !== undefined ? { headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: await r.json() as T };
  }

  /** Kills every process (SIGCONT first is not needed: SIGKILL ends stopped processes) and removes the data. */
  async destroy(): Promise<void> {
    for (const id of [...this.procs.keys()]) await this.kill9(id);
    for (const fd of this.logFds.splice(0)) closeSync(fd);
    this.removeNetns();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private removeNetns(): void {
    if (this.netns === null) return;
    for (const e of this.netns.remove()) console.error(`chaos: removing network namespaces: ${e}`);
  }

  /** Copies the nodes' logs out of the run's directory (before it is removed): `<prefix>.n<id>.log`. */
  saveLogs(prefix: string): string[] {
    return this.ids.map((id) => {
      const to = `${prefix}.n${id}.log`;
      copyFileSync(join(this.dir, `n${id}.log`), to);
      return to;
    });
  }

  /** Synchronous last resort (the runner exiting, Ctrl-C): no process or directory of a run outlives the runner. */
  abandonSync(): void {
    for (const id of this.procs.keys()) this.killing.add(id);
    for (const p of this.procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    this.removeNetns();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

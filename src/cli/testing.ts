/**
 * Helpers for tests on real processes: `shoal start` processes on loopback (founded from a static peer
 * list, or joined through a member), clients over HTTP that record a history, kill -9.
 */
import { after } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { HistoryEvent } from "../check/index.js";
import { awaitReady } from "../chaos/cluster.js";
import { bindable } from "./demo.js";

export const shoal = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));

/** n distinct free ports: all are held open until every one is chosen, so none repeats. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, "127.0.0.1", r))));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * The first of n consecutive free ports (`shoal demo` numbers its nodes' ports from a base), below
 * Linux's ephemeral range (32768 on): a run in it was free when checked, then taken by another test's
 * outgoing connection before the demo listened (EADDRINUSE in a clean-clone run).
 */
export async function freePortRun(n: number): Promise<number> {
  const [low, high] = [20_000, 32_768];
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low - n));
    const free = await Promise.all(Array.from({ length: n }, (_, i) => bindable(base + i)));
    if (free.every((f) => f)) return base;
  }
  throw new Error(`no run of ${n} free ports found`);
}

export interface Cluster {
  dir: string;
  /** Extra flags for every node, and whether nodes run in test mode (fault hooks). */
  extraArgs: string[];
  testMode: boolean;
  http: Map<number, number>;
  peer: Map<number, number>;
  procs: Map<number, ChildProcess>;
  /** Shards of the default collection (founders only). */
  shards: number;
  /** The slots clients send requests to (default: every running process). */
  up?: Set<number>;
}

export function startProc(c: Cluster, id: number): void {
  const peers = [...c.peer].filter(([p]) => p !== id).map(([p, port]) => `${p}=127.0.0.1:${port}`).join(",");
  const child = spawn(process.execPath, [shoal, "start", "--id", String(id), "--data-dir", join(c.dir, `n${id}`),
    "--http", `127.0.0.1:${c.http.get(id)}`, "--listen", `127.0.0.1:${c.peer.get(id)}`, "--peers", peers, "--shards", String(c.shards), ...c.extraArgs],
  // Each node's log (JSON lines) next to its data, for reading after a failure.
  { stdio: ["ignore", openSync(join(c.dir, `n${id}.log`), "a"), "inherit"], env: { ...process.env, SHOAL_TEST_MODE: c.testMode ? "1" : "0" } });
  c.procs.set(id, child);
}

export async function ready(c: Cluster, ids: number[], deadlineMs = 30_000): Promise<void> {
  // A timeout says why: each node's last /readyz answer, and the metadata group as each node sees it.
  await awaitReady(ids, (id) => `http://127.0.0.1:${c.http.get(id)}/readyz`, deadlineMs, 10).catch(async (e: Error) => {
    throw new Error(`${e.message}; metadata group as each node sees it: ${await metaViews(c)}`);
  });
}

/** Each running node's view of the metadata group (its leader's includes how it sends to each replica). */
async function metaViews(c: Cluster): Promise<string> {
  const views: Record<number, unknown> = {};
  for (const id of c.procs.keys()) {
    try {
      const r = await fetch(`http://127.0.0.1:${c.http.get(id)}/v1/cluster/status`, { signal: AbortSignal.timeout(2000) });
      views[id] = ((await r.json()) as { meta: unknown }).meta;
    } catch (e) {
      views[id] = (e as Error).message;
    }
  }
  return JSON.stringify(views);
}

export async function kill9(c: Cluster, id: number): Promise<void> {
  const p = c.procs.get(id)!;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGKILL");
  await exited;
  c.procs.delete(id);
}

/** Every cluster started: a test that fails midway must not leave node processes behind. */
export const clusters: Cluster[] = [];
after(async () => {
  const exits: Promise<unknown>[] = [];
  for (const c of clusters) {
    for (const p of c.procs.values()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      exits.push(new Promise((r) => p.once("exit", r)));
      p.kill("SIGKILL");
    }
  }
  await Promise.all(exits);
  // Data dirs and node logs go with the processes; SHOAL_KEEP_TEST_DIRS=1 keeps them to look into a failure.
  if (process.env["SHOAL_KEEP_TEST_DIRS"] === "1") {
    for (const c of clusters) console.log(`kept ${c.dir}`);
  } else {
    for (const c of clusters) rmSync(c.dir, { recursive: true, force: true });
  }
});

export async function startCluster(extraArgs: string[] = [], testMode = false): Promise<Cluster> {
  const c: Cluster = {
    dir: mkdtempSync(join(tmpdir(), "shoal-procs-")), http: new Map(), peer: new Map(), procs: new Map(), extraArgs, testMode, shards: 2,
  };
  clusters.push(c);
  const ports = await freePorts(6);
  for (const id of [1, 2, 3]) {
    c.http.set(id, ports[id - 1]!);
    c.peer.set(id, ports[id + 2]!);
  }
  for (const id of [1, 2, 3]) startProc(c, id);
  await ready(c, [1, 2, 3]);
  return c;
}

export async function stop(c: Cluster): Promise<void> {
  for (const id of [...c.procs.keys()]) {
    const p = c.procs.get(id)!;
    if (p.exitCode !== null || p.signalCode !== null) continue; // exited already: no exit event will come
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }
  c.procs.clear();
}

/** A closed-loop client: unique-key writes (for the durability check) and put/get on shared keys (history). */
export class Client {
  readonly acked = new Map<string, number>();
  readonly history: HistoryEvent[];
  private n = 0;
  /** The history's process: a new one after each unknown outcome (Jepsen's rule). */
  private process: number;
  constructor(readonly id: number, history: HistoryEvent[], private readonly started: number) {
    this.history = history;
    this.process = id;
  }

  async step(c: Cluster): Promise<void> {
    const alive = [...(c.up ?? c.procs.keys())];
    const node = alive[(this.id + this.n) % alive.length]!;
    const base = `http://127.0.0.1:${c.http.get(node)}/v1/collections/default/records`;
    this.n++;
    const now = () => performance.now() - this.started;
    if (this.n % 3 === 0) {
      const key = `shared${this.n % 2}`;
      this.history.push({ process: this.process, type: "invoke", f: "read", key, value: null, time: now() });
      try {
        const r = await fetch(`${base}/${key}?consistency=linearizable`, { signal: AbortSignal.timeout(8000) });
        const body = (await r.json()) as { payload?: string };
        if (r.status === 200 || r.status === 404) {
          this.history.push({ process: this.process, type: "ok", f: "read", key, value: r.status === 200 ? body.payload : null, time: now() });
        } else this.history.push({ process: this.process, type: "fail", f: "read", key, value: null, time: now() });
      } catch {
        this.history.push({ process: this.process, type: "fail", f: "read", key, value: null, time: now() });
      }
      return;
    }
    const shared = this.n % 3 === 1;
    const key = shared ? `shared${this.n % 2}` : `w-${this.id}-${this.n}`;
    const value = `${this.id}.${this.n}`;
    if (shared) this.history.push({ process: this.process, type: "invoke", f: "write", key, value, time: now() });
    let outcome: "ok" | "fail" | "info" = "info";
    try {
      const r = await fetch(`${base}/${key}`, {
        method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ payload: value }),
        signal: AbortSignal.timeout(8000),
      });
      const body = (await r.json()) as { version?: number; error?: { code: string } };
      if (r.status === 200) {
        outcome = "ok";
        if (!shared) this.acked.set(key, body.version!);
      } else if (r.status === 503 && (body.error?.code === "no_leader" || body.error?.code === "leader_unreachable")) outcome = "fail"; // refused before the log
    } catch {
      outcome = "info";
    }
    if (shared) {
      this.history.push({ process: this.process, type: outcome, f: "write", key, value, time: now() });
      if (outcome === "info") this.process += 100;
    }
  }
}

export async function run(c: Cluster, clients: Client[], ops: number): Promise<void> {
  await Promise.all(clients.map(async (cl) => {
    for (let i = 0; i < ops; i++) await cl.step(c);
  }));
}

export async function leaderOf(c: Cluster, shard: number): Promise<number> {
  for (const id of c.procs.keys()) {
    const st = (await (await fetch(`http://127.0.0.1:${c.http.get(id)}/v1/cluster/status`, { signal: AbortSignal.timeout(5000) })).json()) as { shards: { shard: number; leader: number }[] };
    const l = st.shards.find((s) => s.shard === shard)!.leader;
    if (l !== 0) return l;
  }
  return 0;
}

export async function checkAcked(c: Cluster, clients: Client[]): Promise<number> {
  const node = [...(c.up ?? c.procs.keys())][0]!;
  let n = 0;
  for (const cl of clients) {
    for (const [key, version] of cl.acked) {
      const r = await fetch(`http://127.0.0.1:${c.http.get(node)}/v1/collections/default/records/${key}`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(r.status, 200, `acknowledged write ${key} is lost`);
      assert.equal(((await r.json()) as { version: number }).version, version, key);
      n++;
    }
  }
  return n;
}


/** A cluster founded by node 1 alone; others join it with joinProc. */
export async function startFounder(shards: number, extraArgs: string[] = [], testMode = false): Promise<Cluster> {
  const c: Cluster = {
    dir: mkdtempSync(join(tmpdir(), "shoal-grow-")), http: new Map(), peer: new Map(), procs: new Map(), extraArgs, testMode, shards,
  };
  clusters.push(c);
  const [http, peer] = await freePorts(2);
  c.http.set(1, http!);
  c.peer.set(1, peer!);
  startProc(c, 1);
  await ready(c, [1]);
  return c;
}

/**
 * Starts a new node in `slot` that joins through the member in slot `via` (`shoal start --join`). The
 * cluster assigns its id; joining one at a time, slot and id agree (callers check with nodes()).
 */
export async function joinProc(c: Cluster, slot: number, via: number, extraArgs: string[] = [], ports?: [number, number]): Promise<void> {
  const [http, peer] = ports ?? await freePorts(2);
  c.http.set(slot, http!);
  c.peer.set(slot, peer!);
  const child = spawn(process.execPath, [shoal, "start", "--join", `http://127.0.0.1:${c.http.get(via)}`, "--data-dir", join(c.dir, `n${slot}`),
    "--http", `127.0.0.1:${http}`, "--listen", `127.0.0.1:${peer}`, ...extraArgs],
  { stdio: ["ignore", openSync(join(c.dir, `n${slot}.log`), "a"), "inherit"], env: { ...process.env, SHOAL_TEST_MODE: c.testMode ? "1" : "0" } });
  c.procs.set(slot, child);
}

/** A JSON request to the node in `slot`. */
export async function api<T>(c: Cluster, slot: number, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`http://127.0.0.1:${c.http.get(slot)}${path}`, {
    method, signal: AbortSignal.timeout(10_000),
    ...(body !== undefined ? { headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: await r.json() as T };
}

export interface NodeRow { id: number; lifecycle: string; worker: string; health: string; role: string }
export interface ShardRow { shard: number; epoch: number; leader: number; replicas: { node: number; role: string }[] }

export async function nodes(c: Cluster, slot: number): Promise<NodeRow[]> {
  return (await api<{ nodes: NodeRow[] }>(c, slot, "GET", "/v1/cluster/nodes")).body.nodes;
}

export async function shards(c: Cluster, slot: number): Promise<ShardRow[]> {
  return (await api<{ shards: ShardRow[] }>(c, slot, "GET", "/v1/cluster/shards")).body.shards;
}

/** Changes cluster settings through the node in `slot` (against the version in force). */
export async function configure(c: Cluster, slot: number, settings: Record<string, number>): Promise<void> {
  const current = await api<{ version: number }>(c, slot, "GET", "/v1/cluster/config");
  const r = await api(c, slot, "PUT", "/v1/cluster/config", { baseVersion: current.body.version, settings, note: "test" });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

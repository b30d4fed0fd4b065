/**
 * `shoal demo --nodes N`: a local cluster of N node processes on loopback. Run again on the same data
 * directory, it resumes that cluster; `--fresh` founds a new one. A node that dies is reported and the
 * others keep running; Ctrl-C stops them all.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { holderAlive, readLock } from "../node/data-dir-lock.js";
import { SHARDS_MAX } from "../meta/ranges.js";

export interface DemoOptions {
  nodes: string;
  httpPort: string;
  peerPort: string;
  shards: string;
  dataDir: string;
  /** Delete the demo cluster in dataDir (if any) and found a new one. */
  fresh?: boolean;
}

const shoalBin = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));
const startTimeoutMs = 60_000;
const stopTimeoutMs = 20_000;
const pollMs = 200;
const tailLines = 10;

/** What a demo cluster was founded with (DIR/demo.json): a resumed cluster must keep its ports and shard count. */
interface Layout {
  nodes: number;
  httpPort: number;
  peerPort: number;
  shards: number;
  /**
   * Slots 1..founders found the cluster together (static peers, every shard born with a voter on each);
   * later slots join it. Absent in demo.json of clusters founded by node 1 alone.
   */
  founders?: number;
}

/** A fresh demo founds with up to three nodes, so every shard starts with three voters (issue 13). */
const FOUNDERS_MAX = 3;

class UsageError extends Error {}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

function integer(flag: string, v: string, min: number, max: number): number {
  // Digits only: Number() would also take "0x1f", "1e3" and " 7 ".
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function parseLayout(opts: DemoOptions): Layout {
  const nodes = integer("--nodes", opts.nodes, 1, 9);
  const layout = {
    nodes,
    httpPort: integer("--http-port", opts.httpPort, 1, 65536 - nodes),
    peerPort: integer("--peer-port", opts.peerPort, 1, 65536 - nodes),
    shards: integer("--shards", opts.shards, 1, SHARDS_MAX),
  };
  if (Math.abs(layout.httpPort - layout.peerPort) < nodes) {
    throw new UsageError(`--http-port ${layout.httpPort} and --peer-port ${layout.peerPort} overlap: ${nodes} node(s) use ${nodes} consecutive ports each`);
  }
  return layout;
}

const nodeDir = (dir: string, slot: number) => join(dir, `node-${slot}`);
const logFile = (dir: string, slot: number) => join(dir, `node-${slot}.log`);

/** The slots whose data directory holds a node (it wrote its identity), in order. */
function slotsWithData(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => /^node-(\d+)$/.exec(name))
    .filter((m) => m !== null && existsSync(join(dir, m[0], "node.json")))
    .map((m) => Number(m![1]))
    .sort((a, b) => a - b);
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return null;
  }
}

/** The flags that differ between the cluster in the directory and this run, as `--flag value` of the cluster. */
function layoutDifferences(dir: string, want: Layout): string[] {
  // A directory from before demo.json existed: node 1 remembers the shard count, the ports are unknown.
  const saved = readJson<Layout>(join(dir, "demo.json"));
  const founded = readJson<{ shards: number }>(join(nodeDir(dir, 1), "node.json"));
  const diffs: string[] = [];
  if (saved !== null && saved.httpPort !== want.httpPort) diffs.push(`--http-port ${saved.httpPort}`);
  if (saved !== null && saved.peerPort !== want.peerPort) diffs.push(`--peer-port ${saved.peerPort}`);
  if (founded !== null && founded.shards !== want.shards) diffs.push(`--shards ${founded.shards}`);
  return diffs;
}

/** Why this run must not touch the cluster in `dir`, or null. */
function refusal(dir: string, slots: number[], layout: Layout, fresh: boolean): string | null {
  for (const slot of slots) {
    const holder = readLock(nodeDir(dir, slot));
    if (holder !== null && holderAlive(holder)) {
      return `the demo cluster in ${dir} is running already (node ${slot}: process ${holder.pid}, http ${holder.http}); stop it first`;
    }
  }
  if (fresh || slots.length === 0) return null;
  if (!slots.includes(1)) return `${dir} holds demo nodes ${slots.join(", ")} but not node 1, which founded the cluster; --fresh starts over`;
  const highest = slots.at(-1)!;
  const diffs = layoutDifferences(dir, layout);
  if (highest > layout.nodes) diffs.unshift(`--nodes ${highest}`);
  if (diffs.length > 0) {
    return `the demo cluster in ${dir} was founded with ${diffs.join(" ")}; run \`shoal demo ${diffs.join(" ")}\` to resume it, or add --fresh to start over`;
  }
  return null;
}

/** Whether nothing listens on the loopback port now (a node that cannot listen exits right after starting). */
export function bindable(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((r) => {
    server.once("error", () => r(false));
    server.listen(port, "127.0.0.1", () => server.close(() => r(true)));
  });
}

async function portsInUse(layout: Layout): Promise<string[]> {
  const ports = Array.from({ length: layout.nodes }, (_, i) => [
    { port: layout.httpPort + i, what: `node ${i + 1}'s HTTP port` }, { port: layout.peerPort + i, what: `node ${i + 1}'s peer port` }]).flat();
  const free = await Promise.all(ports.map((p) => bindable(p.port)));
  return ports.filter((_, i) => !free[i]).map((p) => `127.0.0.1:${p.port} (${p.what})`);
}

function removeCluster(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (/^node-\d+(\.log)?$/.test(name) || name === "demo.json") rmSync(join(dir, name), { recursive: true, force: true });
  }
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** The last `n` lines of a file, reading at most its last 64 KiB. */
function lastLines(file: string, n: number): string[] {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return [];
  }
  try {
    const size = statSync(file).size;
    const buf = Buffer.alloc(Math.min(size, 64 << 10));
    readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString("utf8").split("\n").filter((l) => l.trim() !== "").slice(-n);
  } finally {
    closeSync(fd);
  }
}

const levels: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };

/** A pino JSON line as a person reads it (with the stack of an error, which JSON keeps on one line). */
function readable(line: string): string {
  let entry: { time?: number; level?: number; msg?: string; err?: { stack?: string } };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return line;
  }
  if (typeof entry !== "object" || entry === null) return line;
  const time = entry.time === undefined ? "" : `${new Date(entry.time).toISOString()} `;
  const stack = entry.err?.stack === undefined ? "" : `\n      ${entry.err.stack.split("\n").join("\n      ")}`;
  return `${time}${levels[entry.level ?? 30] ?? entry.level} ${entry.msg ?? line}${stack}`;
}

interface DemoNode {
  slot: number;
  args: string[];
  child: ChildProcess;
  /** Its last lines on stderr (the log on stdout goes to its file). */
  stderrTail: string[];
  /** Settles once it exited and its exit was reported. */
  closed: Promise<void>;
}

export async function demoCommand(opts: DemoOptions): Promise<number> {
  let layout: Layout;
  try {
    layout = parseLayout(opts);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`shoal demo: ${e.message}`);
    return 2;
  }
  const dir = resolve(opts.dataDir);
  const existing = slotsWithData(dir);
  const refused = refusal(dir, existing, layout, opts.fresh === true);
  if (refused !== null) {
    console.error(`shoal demo: ${refused}`);
    return 2;
  }
  const busy = await portsInUse(layout);
  if (busy.length > 0) {
    console.error(`shoal demo: in use: ${busy.join(", ")}; stop what listens there, or choose other ports with --http-port and --peer-port`);
    return 2;
  }
  const resuming = existing.length > 0 && opts.fresh !== true;
  const saved = resuming ? readJson<Layout>(join(dir, "demo.json")) : null;
  layout.founders = resuming ? saved?.founders ?? 1 : Math.min(layout.nodes, FOUNDERS_MAX);
  const founders = layout.founders;
  if (opts.fresh === true && existsSync(dir)) {
    removeCluster(dir);
    console.log(existing.length > 0 ? `--fresh: removed the demo cluster in ${dir} (${count(existing.length, "node")}); founding a new one` : `--fresh: founding a new demo cluster in ${dir}`);
  } else if (resuming) {
    const joining = Array.from({ length: layout.nodes }, (_, i) => i + 1).filter((s) => !existing.includes(s));
    const joins = joining.length === 0 ? "" : `; ${joining.length === 1 ? "node" : "nodes"} ${joining.join(", ")} join it`;
    console.log(`resuming the demo cluster in ${dir} (${count(existing.length, "node")}${joins}); --fresh starts over`);
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "demo.json"), JSON.stringify(layout, null, 2) + "\n");

  const slots = Array.from({ length: layout.nodes }, (_, i) => i + 1);
  const http = (slot: number) => `127.0.0.1:${layout.httpPort + slot - 1}`;
  const nodes = new Map<number, DemoNode>();
  let phase: "starting" | "running" | "stopping" = "starting";

  const stopAll = async (code: number): Promise<never> => {
    phase = "stopping";
    console.log("\nstopping the demo cluster…");
    for (const n of nodes.values()) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill("SIGTERM");
    const stopped = Promise.all([...nodes.values()].map((n) => n.closed));
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([stopped.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), stopTimeoutMs); })]);
    clearTimeout(timer);
    if (late) {
      const stuck = [...nodes.values()].filter((n) => n.child.exitCode === null && n.child.signalCode === null);
      console.error(`node(s) ${stuck.map((n) => n.slot).join(", ")} did not stop within ${stopTimeoutMs / 1000} s; killing them (SIGKILL)`);
      for (const n of stuck) n.child.kill("SIGKILL");
      await stopped;
    }
    console.log("all nodes stopped");
    process.exit(late ? 1 : code);
  };
  const onSignal = () => {
    if (phase !== "stopping") void stopAll(0);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const report = (n: DemoNode, code: number | null, signal: NodeJS.Signals | null) => {
    console.error(`\nnode ${n.slot} exited (${signal !== null ? `signal ${signal}` : `code ${code}`})`);
    const log = lastLines(logFile(dir, n.slot), tailLines);
    if (log.length > 0) console.error(`  the end of its log (${logFile(dir, n.slot)}):\n${log.map((l) => `    ${readable(l)}`).join("\n")}`);
    if (n.stderrTail.length > 0) console.error(`  the end of its stderr:\n${n.stderrTail.map((l) => `    ${l}`).join("\n")}`);
    if (phase !== "running") return;
    const alive = [...nodes.values()].filter((m) => m.child.exitCode === null && m.child.signalCode === null).map((m) => m.slot);
    if (alive.length === 0) {
      console.error("every node has exited; the demo ends");
      process.exit(1);
    }
    // Only the Shoal folder has `npx shoal`; the data directory is absolute, so any terminal there works.
    const others = alive.length === 1 ? `node ${alive[0]} keeps` : `nodes ${alive.join(", ")} keep`;
    console.error(`  ${others} running. To restart node ${n.slot}, in another terminal in the Shoal folder (it then runs there, not under this demo):`);
    console.error(`    npx shoal ${n.args.map(quote).join(" ")}`);
  };

  // The cluster's shape comes from the flags only: inherited SHOAL_* settings would give node 1 peers or an
  // address to advertise that the demo does not know about.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^SHOAL_(ID|PEERS|ADVERTISE|JOIN|ROLE)$/.test(k)));
  const spawnNode = (slot: number) => {
    // The founders (slots 1..founders, ids = slots) found the cluster together from a static peer list,
    // so every shard is born with a voter on each; later slots join it through node 1's HTTP API
    // (MEM-1). A node that joined before remembers it and restarts as itself (`--join` is then ignored).
    const founder = slot <= founders;
    const peers = Array.from({ length: founders }, (_, i) => i + 1).filter((s) => s !== slot).map((s) => `${s}=127.0.0.1:${layout.peerPort + s - 1}`);
    const args = ["start", ...(founder ? ["--id", String(slot), ...(peers.length > 0 ? ["--peers", peers.join(",")] : [])] : []),
      "--data-dir", nodeDir(dir, slot), "--http", http(slot),
      "--listen", `127.0.0.1:${layout.peerPort + slot - 1}`, "--shards", String(layout.shards), ...(founder ? [] : ["--join", `http://${http(1)}`])];
    const out = openSync(logFile(dir, slot), "a");
    // SHOAL_DEMO_NODE_FLAGS: flags for the nodes' Node.js (profiling: "--cpu-prof --cpu-prof-dir=DIR"), which NODE_OPTIONS refuses.
    const nodeFlags = (process.env.SHOAL_DEMO_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "");
    const child = spawn(process.execPath, [...nodeFlags, shoalBin, ...args], { stdio: ["ignore", out, "pipe"], env });
    closeSync(out);
    const n: DemoNode = { slot, args, child, stderrTail: [], closed: Promise.resolve() };
    child.stderr!.on("data", (b: Buffer) => {
      process.stderr.write(b.toString().replace(/^(?=.)/gm, `[node ${slot}] `));
      n.stderrTail.push(...b.toString().split("\n").filter((l) => l.trim() !== ""));
      n.stderrTail.splice(0, Math.max(0, n.stderrTail.length - tailLines));
    });
    // 'close', not 'exit': by then everything it wrote on stderr has arrived.
    n.closed = new Promise((done) => child.once("close", (code, signal) => {
      if (phase !== "stopping") report(n, code, signal);
      done();
    }));
    nodes.set(slot, n);
  };

  const deadlineMs = Date.now() + startTimeoutMs;
  /** Polls until `cond` holds; the slot of a node that exited meanwhile, or "timeout". */
  const until = async (cond: () => Promise<boolean>): Promise<number | "timeout" | null> => {
    while (Date.now() < deadlineMs) {
      const dead = [...nodes.values()].find((n) => n.child.exitCode !== null || n.child.signalCode !== null);
      if (dead !== undefined) return dead.slot;
      if (await cond()) return null;
      await new Promise((r) => setTimeout(r, pollMs));
    }
    return "timeout";
  };
  const failStart = async (failed: number | "timeout", what: string): Promise<never> => {
    if (failed === "timeout") console.error(`${what} within ${startTimeoutMs / 1000} s; see the logs in ${dir}`);
    else {
      await nodes.get(failed)!.closed;
      console.error(`the demo cluster did not start: node ${failed} exited`);
    }
    return stopAll(1);
  };
  let shown = "";
  const progress = (line: string) => {
    if (line !== shown) console.log(`  ${line}`);
    shown = line;
  };
  const waitReady = async (wanted: number[]) => {
    const ready = new Set<number>();
    const failed = await until(async () => {
      for (const slot of wanted.filter((s) => !ready.has(s))) if (await isReady(`http://${http(slot)}/readyz`)) ready.add(slot);
      progress(`nodes ready: ${ready.size}/${wanted.length}`);
      return ready.size === wanted.length;
    });
    if (failed !== null) await failStart(failed, `node(s) ${wanted.filter((s) => !ready.has(s)).join(", ")} did not become ready`);
  };

  if (resuming) {
    // Every node at once: the metadata group has several voters, and node 1 alone has no quorum.
    for (const slot of slots) spawnNode(slot);
  } else {
    // The founders together (their metadata group needs a quorum of them), then the others join.
    for (const slot of slots.slice(0, founders)) spawnNode(slot);
    await waitReady(slots.slice(0, founders));
    for (const slot of slots.slice(founders)) spawnNode(slot);
  }
  await waitReady(slots);
  // The placement driver spreads replicas over the joined nodes: wait for it, showing progress.
  const want = Math.min(layout.nodes, 3);
  const placed = await until(async () => {
    const spread = await replicated(`http://${http(1)}/v1/cluster/shards`, want);
    progress(spread === null ? "placing replicas: waiting for the shard map" : `placing replicas: ${spread.done}/${spread.total} shards on ${want} nodes`);
    return spread !== null && spread.done === spread.total && spread.total > 0;
  });
  if (placed === "timeout") console.error(`the replicas were not placed within ${startTimeoutMs / 1000} s; the cluster runs, but check \`shoal shard ls\``);
  else if (placed !== null) await failStart(placed, "the replicas were not placed");
  phase = "running";
  const shards = readJson<{ shards: number }>(join(nodeDir(dir, 1), "node.json"))?.shards ?? layout.shards;
  console.log(`Shoal demo cluster: ${count(layout.nodes, "node")}, ${count(shards, "shard")}, data in ${dir}`);
  console.log("");
  for (const slot of slots) console.log(`  node ${slot}: http://${http(slot)}   (peer port ${layout.peerPort + slot - 1}, log ${logFile(dir, slot)})`);
  console.log("");
  console.log(`Dashboard: http://${http(1)}/ui (any node serves it)`);
  console.log("");
  console.log("Try:");
  console.log(`  curl -X PUT http://${http(1)}/v1/collections/default/records/hello -H 'content-type: application/json' -d '{"payload":{"greeting":"hi"}}'`);
  console.log(`  curl http://${http(layout.nodes)}/v1/collections/default/records/hello`);
  console.log(`  npx shoal status --endpoint http://${http(1)}`);
  console.log("");
  console.log(`Ctrl-C stops every node; \`shoal demo\` on ${dir} again resumes this cluster (--fresh starts over).`);
  return await new Promise<number>(() => undefined);
}

async function isReady(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;
  } catch {
    return false; // not listening yet
  }
}

/** How many shards have `want` voters, from a node's shard map (null while it cannot say). */
async function replicated(url: string, want: number): Promise<{ done: number; total: number } | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    if (!r.ok) return null;
    const shards = ((await r.json()) as { shards: { replicas: { role: string }[] }[] }).shards;
    return { done: shards.filter((s) => s.replicas.filter((x) => x.role === "voter").length >= want).length, total: shards.length };
  } catch {
    return null;
  }
}

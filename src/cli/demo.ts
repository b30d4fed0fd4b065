/** `shoal demo --nodes N`: a local cluster of N node processes on loopback; Ctrl-C stops them all. */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join as join_, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface DemoOptions {
  nodes: string;
  httpPort: string;
  peerPort: string;
  shards: string;
  dataDir: string;
}

const shoalBin = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));

/** How many shards have `want` voters, from a node's shard map (null while it cannot say). */
async function replicated(url: string, want: number): Promise<{ done: number; total: number } | null> {
  try {
    const r = await fetch(url);
    if (!r.ok) return null;
    const shards = ((await r.json()) as { shards: { replicas: { role: string }[] }[] }).shards;
    return { done: shards.filter((s) => s.replicas.filter((x) => x.role === "voter").length >= want).length, total: shards.length };
  } catch {
    return null;
  }
}

async function ready(url: string, deadlineMs: number, child: ChildProcess): Promise<boolean> {
  while (Date.now() < deadlineMs) {
    if (child.exitCode !== null) return false;
    try {
      const r = await fetch(url);
      if (r.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export async function demoCommand(opts: DemoOptions): Promise<number> {
  const n = Number(opts.nodes);
  const httpBase = Number(opts.httpPort);
  const peerBase = Number(opts.peerPort);
  if (!Number.isInteger(n) || n < 1 || n > 9) {
    console.error(`shoal demo: --nodes must be 1 to 9, got ${opts.nodes}`);
    return 2;
  }
  const dir = resolve(opts.dataDir);
  mkdirSync(dir, { recursive: true });
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const children = new Map<number, ChildProcess>();
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log("\nstopping the demo cluster…");
    for (const c of children.values()) if (c.exitCode === null) c.kill("SIGTERM");
    await Promise.all([...children.values()].map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once("exit", r)))));
    console.log("all nodes stopped");
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));
  const spawnNode = (id: number) => {
    // Node 1 founds the cluster; the others join it through its HTTP API (MEM-1) and the placement
    // driver gives them replicas. The slot numbers ports and directories; the cluster assigns ids.
    const join = id === 1 ? [] : ["--join", `http://127.0.0.1:${httpBase}`];
    const log = createWriteStream(join_(dir, `node-${id}.log`), { flags: "a" });
    const child = spawn(process.execPath, [shoalBin, "start", "--id", "1", "--data-dir", join_(dir, `node-${id}`),
      "--http", `127.0.0.1:${httpBase + id - 1}`, "--listen", `127.0.0.1:${peerBase + id - 1}`, "--shards", opts.shards, ...join],
    { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.pipe(log);
    child.stderr!.on("data", (b: Buffer) => process.stderr.write(`[node ${id}] ${b.toString()}`));
    child.once("exit", (code, signal) => {
      if (!stopping) {
        console.error(`node ${id} exited (${signal ?? `code ${code}`}); see ${join_(dir, `node-${id}.log`)}`);
        void stopAll(1);
      }
    });
    children.set(id, child);
  };
  const deadline = Date.now() + 60_000;
  spawnNode(1);
  if (!(await ready(`http://127.0.0.1:${httpBase}/readyz`, deadline, children.get(1)!))) {
    console.error(`node 1 did not become ready within 60 s; see ${join_(dir, "node-1.log")}`);
    await stopAll(1);
    return 1;
  }
  for (const id of ids.slice(1)) spawnNode(id);
  for (const id of ids) {
    if (!(await ready(`http://127.0.0.1:${httpBase + id - 1}/readyz`, deadline, children.get(id)!))) {
      console.error(`node ${id} did not become ready within 60 s; see ${join_(dir, `node-${id}.log`)}`);
      await stopAll(1);
      return 1;
    }
  }
  // The placement driver spreads replicas over the joined nodes: wait for it, showing progress.
  const want = Math.min(n, 3);
  let shown = "";
  for (;;) {
    const spread = await replicated(`http://127.0.0.1:${httpBase}/v1/cluster/shards`, want);
    if (spread !== null && spread.done === spread.total && spread.total > 0) break;
    const line = spread === null ? "waiting for the shard map" : `${spread.done}/${spread.total} shards on ${want} nodes`;
    if (line !== shown) console.log(`  placing replicas: ${line}`);
    shown = line;
    if (Date.now() > deadline) {
      console.error("the replicas were not placed within 60 s; the cluster runs, but check `shoal shard ls`");
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`Shoal demo cluster: ${n} node(s), ${opts.shards} shard(s), data in ${dir}`);
  console.log("");
  for (const id of ids) console.log(`  node ${id}: http://127.0.0.1:${httpBase + id - 1}   (peer port ${peerBase + id - 1}, log ${join_(dir, `node-${id}.log`)})`);
  console.log("");
  console.log("Try:");
  console.log(`  curl -X PUT http://127.0.0.1:${httpBase}/v1/collections/default/records/hello -H 'content-type: application/json' -d '{"payload":{"greeting":"hi"}}'`);
  console.log(`  curl http://127.0.0.1:${httpBase + n - 1}/v1/collections/default/records/hello`);
  console.log(`  npx shoal status --endpoint http://127.0.0.1:${httpBase}`);
  console.log("");
  console.log("Ctrl-C stops every node.");
  return await new Promise<number>(() => undefined);
}

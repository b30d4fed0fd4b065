/** `shoal demo --nodes N`: a local cluster of N node processes on loopback; Ctrl-C stops them all. */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface DemoOptions {
  nodes: string;
  httpPort: string;
  peerPort: string;
  shards: string;
  dataDir: string;
}

const shoalBin = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));

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
  for (const id of ids) {
    const peers = ids.filter((p) => p !== id).map((p) => `${p}=127.0.0.1:${peerBase + p - 1}`).join(",");
    const log = createWriteStream(join(dir, `node-${id}.log`), { flags: "a" });
    const child = spawn(process.execPath, [shoalBin, "start", "--id", String(id), "--data-dir", join(dir, `node-${id}`),
      "--http", `127.0.0.1:${httpBase + id - 1}`, "--listen", `127.0.0.1:${peerBase + id - 1}`, "--peers", peers,
      "--shards", opts.shards], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.pipe(log);
    child.stderr!.on("data", (b: Buffer) => process.stderr.write(`[node ${id}] ${b.toString()}`));
    child.once("exit", (code, signal) => {
      if (!stopping) {
        console.error(`node ${id} exited (${signal ?? `code ${code}`}); see ${join(dir, `node-${id}.log`)}`);
        void stopAll(1);
      }
    });
    children.set(id, child);
  }
  const deadline = Date.now() + 30_000;
  for (const id of ids) {
    if (!(await ready(`http://127.0.0.1:${httpBase + id - 1}/readyz`, deadline, children.get(id)!))) {
      console.error(`node ${id} did not become ready within 30 s; see ${join(dir, `node-${id}.log`)}`);
      await stopAll(1);
      return 1;
    }
  }
  console.log(`Shoal demo cluster: ${n} node(s), ${opts.shards} shard(s), data in ${dir}`);
  console.log("");
  for (const id of ids) console.log(`  node ${id}: http://127.0.0.1:${httpBase + id - 1}   (peer port ${peerBase + id - 1}, log ${join(dir, `node-${id}.log`)})`);
  console.log("");
  console.log("Try:");
  console.log(`  curl -X PUT http://127.0.0.1:${httpBase}/v1/collections/default/records/hello -H 'content-type: application/json' -d '{"payload":{"greeting":"hi"}}'`);
  console.log(`  curl http://127.0.0.1:${httpBase + n - 1}/v1/collections/default/records/hello`);
  console.log(`  npx shoal status --endpoint http://127.0.0.1:${httpBase}`);
  console.log("");
  console.log("Ctrl-C stops every node.");
  return await new Promise<number>(() => undefined);
}

/**
 * `shoal demo` on real processes: a node that dies is reported with how to restart it and the others
 * keep serving; run again on its directory the demo resumes its cluster; `--fresh` founds a new one.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readLock } from "../node/data-dir-lock.js";
import { waitFor } from "../node/testing.js";
import { freePortRun, shoal } from "./testing.js";

const timeoutMs = 60_000;
const procs: ChildProcess[] = [];
const dirs: string[] = [];
after(() => {
  for (const p of procs) {
    try {
      // Demos run in their own process group: this takes their nodes down with them.
      process.kill(-p.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Run {
  proc: ChildProcess;
  /** stdout and stderr as they arrive. */
  out: string;
  code: Promise<number | null>;
}

function launch(args: string[]): Run {
  const proc = spawn(process.execPath, [shoal, ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  procs.push(proc);
  const run: Run = { proc, out: "", code: new Promise((r) => proc.once("close", (code) => r(code))) };
  proc.stdout!.on("data", (b: Buffer) => { run.out += b.toString(); });
  proc.stderr!.on("data", (b: Buffer) => { run.out += b.toString(); });
  return run;
}

async function printed(run: Run, what: string | RegExp): Promise<void> {
  await waitFor(`${what} in the demo's output`, () => {
    if (run.proc.exitCode !== null) throw new Error(`the demo exited (${run.proc.exitCode}):\n${run.out}`);
    return typeof what === "string" ? run.out.includes(what) : what.test(run.out);
  }, timeoutMs);
}

async function stopDemo(run: Run): Promise<void> {
  run.proc.kill("SIGINT");
  assert.equal(await run.code, 0, run.out);
  assert.match(run.out, /all nodes stopped/);
}

/** A record read through `port` (retried while a shard elects a leader), or its status if absent. */
async function read(port: number, id: string): Promise<{ status: number; payload?: unknown }> {
  let last = { status: 0 };
  await waitFor(`record ${id} through port ${port}`, async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v1/collections/default/records/${id}`, { signal: AbortSignal.timeout(5000) });
      last = { status: r.status, ...(r.status === 200 ? { payload: ((await r.json()) as { payload: unknown }).payload } : {}) };
      return r.status === 200 || r.status === 404;
    } catch {
      return false;
    }
  }, timeoutMs);
  return last;
}

test("shoal demo: a dead node is reported with its restart command and the others keep serving; the demo resumes its cluster; --fresh starts over", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-demo-"));
  dirs.push(dir);
  const base = await freePortRun(6);
  const [http, peer] = [base, base + 3];
  const args = ["demo", "--nodes", "3", "--http-port", String(http), "--peer-port", String(peer), "--shards", "2", "--data-dir", dir];

  const first = launch(args);
  await printed(first, "Shoal demo cluster:");
  await waitFor("a write accepted", async () => {
    const r = await fetch(`http://127.0.0.1:${http}/v1/collections/default/records/kept`, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ payload: { n: 1 } }), signal: AbortSignal.timeout(10_000),
    }).catch(() => null);
    return r?.status === 200;
  }, timeoutMs);

  // A node dies: the demo says so, shows how to restart it, and keeps the others running.
  const victim = readLock(join(dir, "node-2"))!.pid;
  process.kill(victim, "SIGKILL");
  await printed(first, /npx shoal (start .*node-2.*)\n/);
  assert.match(first.out, /node 2 exited \(signal SIGKILL\)/);
  assert.match(first.out, /the end of its log/);
  const hint = /npx shoal (start .*node-2.*)\n/.exec(first.out)![1]!.split(" ");
  // Node 2 is a founder: it restarts with its id and the other founders as static peers.
  assert.deepEqual(hint, ["start", "--id", "2", "--peers", `1=127.0.0.1:${peer},3=127.0.0.1:${peer + 2}`, "--data-dir", join(dir, "node-2"),
    "--http", `127.0.0.1:${http + 1}`, "--listen", `127.0.0.1:${peer + 1}`, "--shards", "2"]);
  for (const port of [http, http + 2]) assert.deepEqual(await read(port, "kept"), { status: 200, payload: { n: 1 } });
  assert.equal(first.proc.exitCode, null, "the demo keeps running");
  // The hint works: node 2 comes back by hand, as itself.
  const restarted = launch(hint);
  await waitFor("node 2 ready again", async () => (await fetch(`http://127.0.0.1:${http + 1}/readyz`).catch(() => null))?.status === 200, timeoutMs);
  assert.deepEqual(await read(http + 1, "kept"), { status: 200, payload: { n: 1 } });
  restarted.proc.kill("SIGTERM");
  assert.equal(await restarted.code, 0);
  await stopDemo(first);
  for (const slot of [1, 2, 3]) assert.equal(existsSync(join(dir, `node-${slot}`, "LOCK")), false, `node ${slot} released its lock`);

  // Flags that do not fit the cluster in the directory are refused before anything starts.
  const fewer = launch([...args.slice(0, 2), "2", ...args.slice(3)]);
  assert.equal(await fewer.code, 2);
  assert.match(fewer.out, /was founded with --nodes 3; run `shoal demo --nodes 3` to resume it, or add --fresh/);
  const badPort = launch([...args, "--http-port", "70000"]);
  assert.equal(await badPort.code, 2);
  assert.match(badPort.out, /--http-port must be an integer from 1 to 65533, got "70000"/);

  // Run again: the same cluster, all nodes at once (node 1 alone has no metadata quorum).
  const second = launch(args);
  await printed(second, "Shoal demo cluster:");
  assert.match(second.out, new RegExp(`resuming the demo cluster in ${dir} \\(3 nodes\\); --fresh starts over`));
  assert.deepEqual(await read(http + 2, "kept"), { status: 200, payload: { n: 1 } });
  const twice = launch(args);
  assert.equal(await twice.code, 2);
  assert.match(twice.out, /is running already \(node 1: process \d+/);
  await stopDemo(second);

  const fresh = launch([...args, "--fresh"]);
  await printed(fresh, "Shoal demo cluster:");
  assert.match(fresh.out, /--fresh: removed the demo cluster in .* \(3 nodes\); founding a new one/);
  assert.deepEqual(await read(http, "kept"), { status: 404 });
  await stopDemo(fresh);
});

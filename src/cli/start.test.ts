/** `shoal start` as an operator meets it: one process per data directory, crashes in the node's log. */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readLock } from "../node/data-dir-lock.js";
import { waitFor } from "../node/testing.js";
import { bindable } from "./demo.js";
import { type Cluster, configure, freePorts, joinProc, kill9, nodes, ready, shoal, startFounder, startProc, stop } from "./testing.js";

const dirs: string[] = [];
after(() => {
  // SHOAL_KEEP_TEST_DIRS=1 keeps them to look into a failure (as testing.ts does for clusters).
  if (process.env["SHOAL_KEEP_TEST_DIRS"] !== "1") for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Runs a command to its end (bounded), with what it wrote. */
function runToEnd(args: string[], opts: { cwd?: string; stdoutFile?: string } = {}, timeoutMs = 30_000): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd, stdio: ["ignore", opts.stdoutFile === undefined ? "ignore" : openSync(opts.stdoutFile, "w"), "pipe"], timeout: timeoutMs,
  });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => { stderr += b.toString(); });
  return new Promise((r) => child.once("close", (code) => r({ code, stderr })));
}

test("shoal start refuses a data dir in use by a running node (exit 2, naming it); after kill -9 the next start takes the stale lock over", async () => {
  const c = await startFounder(2);
  dirs.push(c.dir);
  const dir = join(c.dir, "n1");
  const holder = c.procs.get(1)!.pid!;
  assert.equal(readLock(dir)?.pid, holder);
  const [http, peer] = await freePorts(2);
  const t0 = performance.now();
  const second = await runToEnd([shoal, "start", "--id", "1", "--data-dir", dir, "--http", `127.0.0.1:${http}`, "--listen", `127.0.0.1:${peer}`, "--shards", "2"]);
  assert.equal(second.code, 2, second.stderr);
  assert.ok(performance.now() - t0 < 10_000, "refused at once");
  assert.match(second.stderr, new RegExp(`is in use by process ${holder} \\(started .*, http 127\\.0\\.0\\.1:${c.http.get(1)}\\); stop it first, or remove .*LOCK`));
  const health = await fetch(`http://127.0.0.1:${c.http.get(1)}/healthz`, { signal: AbortSignal.timeout(5000) });
  assert.equal(health.status, 200, "the running node is untouched");
  assert.equal(readLock(dir)?.pid, holder, "and so is its lock");

  await kill9(c, 1);
  assert.equal(readLock(dir)?.pid, holder, "kill -9 leaves the lock behind");
  startProc(c, 1);
  await ready(c, [1]);
  assert.equal(readLock(dir)?.pid, c.procs.get(1)!.pid);
  assert.match(readFileSync(join(c.dir, "n1.log"), "utf8"), new RegExp(`took over the lock of .* left by process ${holder}`));
  await stop(c);
  assert.equal(existsSync(join(dir, "LOCK")), false, "a graceful stop releases the lock");
});

test("a crash (uncaught exception, unhandled rejection) is logged with its stack through the node's logger and ends the process", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-crash-"));
  dirs.push(dir);
  const startModule = new URL("./start.js", import.meta.url).href;
  // Run from the package root, so that the script finds pino as start.ts does.
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  for (const [name, fault] of [["exception", "setTimeout(() => { throw new Error('boom in a timer'); }, 10);"],
    ["rejection", "void Promise.reject(new Error('boom in a promise'));"]] as const) {
    const script = `const { exitOnCrash } = await import(${JSON.stringify(startModule)});
      const { pino, destination } = await import("pino");
      const logger = pino({ base: { node: 7 } }, destination({ dest: 1, sync: true }));
      exitOnCrash(() => logger);
      ${fault}`;
    const log = join(dir, `${name}.log`);
    const r = await runToEnd(["--input-type=module", "-e", script], { cwd: root, stdoutFile: log });
    assert.notEqual(r.code, 0, name);
    const lines = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { level: number; msg: string; err?: { stack: string } });
    const fatal = lines.find((l) => l.level === 60);
    assert.ok(fatal !== undefined, `${name}: a fatal line in ${JSON.stringify(lines)}`);
    assert.match(fatal.msg, name === "exception" ? /uncaught exception/ : /unhandled promise rejection/);
    assert.match(fatal.err!.stack, /Error: boom in a (timer|promise)\n\s+at /);
  }
});

/**
 * Node 2 joins through node 1 while something else holds its HTTP port: the cluster registers it, then
 * it stops (exit 2) before it caught up. Returns its ports, for starting it again.
 */
async function cutShortJoin(c: Cluster): Promise<{ http: number; peer: number; cut: { code: number | null; stderr: string } }> {
  const [http, peer] = await freePorts(2);
  const squatter = createServer();
  await new Promise<void>((r) => squatter.listen(http, "127.0.0.1", r));
  const cut = await runToEnd([shoal, "start", "--join", `http://127.0.0.1:${c.http.get(1)}`, "--data-dir", join(c.dir, "n2"),
    "--http", `127.0.0.1:${http}`, "--listen", `127.0.0.1:${peer}`]);
  await new Promise((r) => squatter.close(r));
  assert.equal(cut.code, 2, cut.stderr);
  return { http: http!, peer: peer!, cut };
}

test("a node whose join was cut short (registered, then it could not listen) restarts as itself from the members it was told, and catches up", async () => {
  const c = await startFounder(2);
  dirs.push(c.dir);
  const { http, peer, cut } = await cutShortJoin(c);
  assert.match(cut.stderr, /cannot listen/);
  assert.equal(await bindable(peer!), true, "its peer port was released too");
  assert.equal(existsSync(join(c.dir, "n2", "LOCK")), false, "a failed start releases the lock");
  await joinProc(c, 2, 1, [], [http, peer]);
  let seen: unknown = null;
  await waitFor("node 2 caught up and ready", async () => {
    const n2 = (await nodes(c, 1)).find((n) => n.id === 2);
    seen = n2 ?? null;
    return n2 !== undefined && n2.worker === "ready" && n2.health === "healthy";
  }, 30_000).catch((e: Error) => assert.fail(`${e.message}; node 2 as node 1 sees it: ${JSON.stringify(seen)}`));
  await ready(c, [2]);
  await stop(c);
});

test("a node the cluster removed before it started (registered, then silent past nodeRemoveAfterMs) is told so once it starts: it stops and says why", async () => {
  const c = await startFounder(2);
  dirs.push(c.dir);
  await configure(c, 1, { scheduleIntervalMs: 200, nodeDeadAfterMs: 1000, nodeRemoveAfterMs: 1000 });
  // Registered, then it could not listen: silent, so the placement driver removes it.
  const { http, peer } = await cutShortJoin(c);
  await waitFor("node 2 removed from the cluster", async () => (await nodes(c, 1)).find((n) => n.id === 2)?.worker === "removed", 20_000);
  await joinProc(c, 2, 1, [], [http, peer]);
  let answer = "";
  await waitFor("node 2 says it was removed", async () => {
    const r = await fetch(`http://127.0.0.1:${http}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    answer = r === null ? "" : `${r.status} ${await r.text()}`;
    return answer.includes("removed from the cluster");
  }, 20_000).catch((e: Error) => assert.fail(`${e.message}; its last /healthz answer: ${answer}`));
  assert.match(answer, /^503 .*"code":"failed".*node 2 was removed from the cluster \(node 1 says so\)/);
  const readyz = await fetch(`http://127.0.0.1:${http}/readyz`);
  assert.equal(readyz.status, 503);
  assert.match(await readyz.text(), /removed from the cluster/);
  await stop(c);
});

test("a node listening on every interface records --advertise-http in the cluster map; without it, it says what it records and why that is a problem", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-advertise-"));
  dirs.push(dir);
  for (const advertised of [false, true]) {
    const [http, peer] = await freePorts(2);
    const log = join(dir, `${advertised}.log`);
    const child = spawn(process.execPath, [shoal, "start", "--data-dir", join(dir, String(advertised)), "--http", `0.0.0.0:${http}`, "--listen", `127.0.0.1:${peer}`,
      "--shards", "1", ...(advertised ? ["--advertise-http", `127.0.0.1:${http}`] : [])], { stdio: ["ignore", openSync(log, "w"), "inherit"] });
    const exited = new Promise((r) => child.once("exit", r));
    try {
      let recorded = "";
      await waitFor("the node registered", async () => {
        try {
          const r = await fetch(`http://127.0.0.1:${http}/v1/cluster/nodes`, { signal: AbortSignal.timeout(2000) });
          recorded = ((await r.json()) as { nodes: { http: string }[] }).nodes[0]?.http ?? "";
          return recorded !== "";
        } catch {
          return false;
        }
      }, 30_000);
      assert.equal(recorded, advertised ? `127.0.0.1:${http}` : `0.0.0.0:${http}`);
      const warned = /--http listens on every interface and no --advertise-http names this node's address/.test(readFileSync(log, "utf8"));
      assert.equal(warned, !advertised);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  }
});

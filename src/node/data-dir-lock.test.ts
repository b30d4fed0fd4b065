import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { DataDirInUseError, acquireDataDirLock, lockFile, processAlive, readLock } from "./data-dir-lock.js";

const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "shoal-lock-"));
  dirs.push(d);
  return d;
}

/** A live process other than this one, to pose as a lock's holder. */
async function otherProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], { stdio: "ignore" });
  children.push(child);
  await new Promise((r) => child.once("spawn", r));
  return child;
}

const where = { http: "127.0.0.1:7400", peer: "127.0.0.1:7500" };

test("a data dir lock held by a live process refuses a second holder; once that process is dead, the lock is taken over", async () => {
  const dir = tempDir();
  const other = await otherProcess();
  const first = acquireDataDirLock(dir, where, other.pid!);
  assert.equal(readLock(dir)?.pid, other.pid);
  assert.equal(first.tookOverFrom, null);
  assert.throws(() => acquireDataDirLock(dir, { http: "127.0.0.1:7401", peer: "127.0.0.1:7501" }), (e: unknown) => {
    assert.ok(e instanceof DataDirInUseError);
    assert.equal(e.holder?.pid, other.pid);
    assert.ok(e.message.startsWith(`${dir} is in use by process ${other.pid} (started `), e.message);
    assert.ok(e.message.endsWith(`, http 127.0.0.1:7400); stop it first, or remove ${lockFile(dir)} if no such process runs`), e.message);
    return true;
  });
  assert.equal(readLock(dir)?.pid, other.pid, "a refused start leaves the holder's lock alone");
  const exited = new Promise((r) => other.once("exit", r));
  other.kill("SIGKILL");
  await exited;
  assert.equal(processAlive(other.pid!), false);
  const second = acquireDataDirLock(dir, where);
  assert.equal(second.tookOverFrom?.pid, other.pid);
  assert.equal(readLock(dir)?.pid, process.pid);
  // The stale holder's release (had it survived somehow) must not remove the new holder's lock.
  first.release();
  assert.equal(readLock(dir)?.pid, process.pid);
  second.release();
  second.release();
  assert.equal(existsSync(lockFile(dir)), false);
  assert.deepEqual(readdirSync(dir), [], "nothing left behind");
});

test("a data dir lock naming this process's own pid is stale (a previous life under the same pid, as in a restarted container)", () => {
  const dir = tempDir();
  writeFileSync(lockFile(dir), JSON.stringify({ pid: process.pid, startedAt: "2026-01-01T00:00:00Z", ...where, hostname: hostname() }));
  const lock = acquireDataDirLock(dir, where);
  assert.equal(lock.tookOverFrom?.startedAt, "2026-01-01T00:00:00Z");
  assert.notEqual(readLock(dir)?.startedAt, "2026-01-01T00:00:00Z");
  lock.release();
});

test("a data dir lock from another host counts as held (its process cannot be checked from here)", () => {
  const dir = tempDir();
  writeFileSync(lockFile(dir), JSON.stringify({ pid: process.pid, startedAt: "2026-01-01T00:00:00Z", ...where, hostname: `not-${hostname()}` }));
  assert.throws(() => acquireDataDirLock(dir, where), /in use by process \d+ on host not-/);
});

test("an unreadable data dir lock is being written by a starter while it is fresh, and debris (a power loss) once old", () => {
  const dir = tempDir();
  writeFileSync(lockFile(dir), "");
  assert.throws(() => acquireDataDirLock(dir, where), /in use by another process, starting right now; stop it first, or remove .*LOCK/);
  const longAgo = new Date(Date.now() - 60_000);
  utimesSync(lockFile(dir), longAgo, longAgo);
  const lock = acquireDataDirLock(dir, where);
  assert.equal(lock.tookOverFrom, null);
  assert.equal(JSON.parse(readFileSync(lockFile(dir), "utf8")).pid, process.pid);
  lock.release();
});

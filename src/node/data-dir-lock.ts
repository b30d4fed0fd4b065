/**
 * One process per data directory: two nodes over the same WAL and LMDB would corrupt both. The holder
 * keeps `DIR/LOCK` (JSON: who holds it and where it serves) for as long as it runs.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export interface LockHolder {
  pid: number;
  startedAt: string;
  http: string;
  peer: string;
  hostname: string;
}

export class DataDirInUseError extends Error {
  override name = "DataDirInUseError";
  /** holder: null while another process is writing its lock (it is starting right now). */
  constructor(readonly dataDir: string, readonly lockFile: string, readonly holder: LockHolder | null) {
    const who = holder === null ? "another process, starting right now" :
      `process ${holder.pid}${holder.hostname === hostname() ? "" : ` on host ${holder.hostname}`} (started ${holder.startedAt}, http ${holder.http})`;
    super(`${dataDir} is in use by ${who}; stop it first, or remove ${lockFile} if no such process runs`);
  }
}

export interface DataDirLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** The holder of a stale lock this one replaced (its process had died), for the log. */
  readonly tookOverFrom: LockHolder | null;
  /** Removes the lock file if it is still this lock's; safe to call more than once. */
  release(): void;
}

export function lockFile(dataDir: string): string {
  return join(dataDir, "LOCK");
}

/** The lock's holder as its file says, or null when there is no (readable) lock. */
export function readLock(dataDir: string): LockHolder | null {
  try {
    const parsed = JSON.parse(readFileSync(lockFile(dataDir), "utf8")) as Partial<LockHolder>;
    return typeof parsed.pid === "number" ? parsed as LockHolder : null;
  } catch {
    return null;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  // A killed process nobody reaped (a container whose init does not) still answers signal 0 as a zombie.
  if (!existsSync("/proc/self/stat")) return true; // not Linux: signal 0 is all there is
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state …": comm may hold spaces and parentheses, the state follows the last ")".
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false; // gone since the signal
  }
}

/**
 * Whether `holder` still owns its lock. A pid equal to ours is a previous life of this process's pid (a
 * container restarted as pid 1, say), so stale. A holder on another host (a shared volume) cannot be
 * checked from here and counts as live: refusing is recoverable, two writers are not.
 */
export function holderAlive(holder: LockHolder, ownPid = process.pid): boolean {
  if (holder.hostname !== hostname()) return true;
  return holder.pid !== ownPid && processAlive(holder.pid);
}

/** How long a lock file may stay unreadable while its creator writes it; past that it is debris (a power loss). */
const unreadableStaleAfterMs = 10_000;

/**
 * Takes the data directory's lock or throws DataDirInUseError naming the live holder. A lock whose
 * process died (kill -9, power loss) is taken over. `pid` is for tests, which pose as another process.
 */
export function acquireDataDirLock(dataDir: string, where: { http: string; peer: string }, pid = process.pid): DataDirLock {
  const file = lockFile(dataDir);
  const holder: LockHolder = { pid, startedAt: new Date().toISOString(), ...where, hostname: hostname() };
  const content = JSON.stringify(holder) + "\n";
  let tookOverFrom: LockHolder | null = null;
  // Each round either takes the lock, refuses, or removes one stale lock; a second stale lock appearing
  // means another starter raced this one, and the third round settles it.
  for (let round = 0; round < 3; round++) {
    if (create(file, content)) return lockOf(file, holder, content, tookOverFrom);
    const seen = statOf(file);
    if (seen === null) continue; // released meanwhile
    const current = readLock(dataDir);
    if (current === null) {
      if (Date.now() - seen.mtimeMs < unreadableStaleAfterMs) throw new DataDirInUseError(dataDir, file, null);
      removeIfSame(file, seen.ino);
      continue;
    }
    if (holderAlive(current, pid)) throw new DataDirInUseError(dataDir, file, current);
    removeIfSame(file, seen.ino);
    tookOverFrom = current;
  }
  throw new DataDirInUseError(dataDir, file, readLock(dataDir));
}

/** Creates the lock file with its content, or returns false if one exists ('wx': atomic create-if-absent). */
function create(file: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, "wx");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  try {
    writeSync(fd, content);
  } catch (e) {
    unlinkQuietly(file); // an empty lock would hold the directory for unreadableStaleAfterMs
    throw e;
  } finally {
    closeSync(fd);
  }
  return true;
}

function lockOf(file: string, holder: LockHolder, content: string, tookOverFrom: LockHolder | null): DataDirLock {
  let held = true;
  return {
    file, holder, tookOverFrom,
    release() {
      if (!held) return;
      held = false;
      // Only our own lock: if an operator removed it and another process took the directory, that one's stays.
      try {
        if (readFileSync(file, "utf8") === content) unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}

function statOf(file: string): { ino: number; mtimeMs: number } | null {
  try {
    return statSync(file);
  } catch {
    return null;
  }
}

/** Narrows the race between two starters breaking the same stale lock: only the file that was judged goes. */
function removeIfSame(file: string, inode: number): void {
  if (statOf(file)?.ino === inode) unlinkQuietly(file);
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

/**
 * A thread's CPU priority. The index worker builds graphs in the background: on a busy machine it
 * should yield to the node's loop (Raft, applying, answering requests), or an ingest acknowledges at the
 * pace of three graph builds instead of its own (measured: ~40 % of a node's CPU during a batch load
 * went to the graph). On Linux a nice value belongs to a thread, so the worker can lower its own
 * without touching the loop's; elsewhere it would lower the whole process, so it is not done.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { setPriority } from "node:os";

/** Nice values: 0 is the default, 19 the lowest priority (an unprivileged thread can only go up). */
export const NICENESS_MAX = 19;

/** Lowers the calling thread's priority to `niceness`; answers why it could not, or null when done. */
export function niceThisThread(niceness: number): string | null {
  if (!Number.isInteger(niceness) || niceness < 0 || niceness > NICENESS_MAX) throw new Error(`a niceness is an integer in 0..${NICENESS_MAX}, got ${niceness}`);
  if (niceness === 0) return null;
  if (process.platform !== "linux") return `a thread's priority is the process's on ${process.platform}`;
  try {
    setPriority(threadId(), niceness);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The kernel's id of the calling thread (/proc/thread-self is a link to /proc/<pid>/task/<tid>). */
export function threadId(): number {
  const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
  if (!Number.isInteger(tid) || tid <= 0) throw new Error("no thread id in /proc/thread-self");
  return tid;
}

/** A thread's nice value as the kernel reports it (Linux). */
export function niceOf(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces): state is field 3, nice field 19.
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
}

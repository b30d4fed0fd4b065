/**
 * Histories: the events clients saw (invocations and completions), and the operations built from them.
 *
 * Event semantics follow Jepsen: `ok` = the operation took effect with the given result; `fail` = it
 * did not take effect (except a failed `cas`, which took effect and found a different value); `info` =
 * unknown: it may have taken effect at any time after its invocation, so it stays open to the end.
 */

export type EventType = "invoke" | "ok" | "fail" | "info";

export type Fn = "read" | "write" | "cas" | "get" | "put" | "append" | "delete";

export interface HistoryEvent {
  process: number;
  type: EventType;
  f: Fn;
  key?: string;
  /** Invoke: the argument (cas: [expected, new]). Completion: the result (read / get: the value). */
  value: unknown;
  /** Logical or wall time; events must be given in time order. */
  time: number;
}

export interface Operation {
  id: number;
  process: number;
  f: Fn;
  key: string;
  input: unknown;
  /** null when the outcome is unknown. */
  output: unknown;
  /** Whether the outcome is known. */
  known: boolean;
  /** For cas: whether the compare succeeded (when known). */
  ok: boolean;
  call: number;
  /** Infinity when the outcome is unknown. */
  ret: number;
}

export class HistoryError extends Error {
  override name = "HistoryError";
}

/** Pairs invocations with completions per process. Operations without a completion are unknown. */
export function operationsFromEvents(events: readonly HistoryEvent[]): Operation[] {
  const open = new Map<number, { ev: HistoryEvent; line: number }>();
  const ops: Operation[] = [];
  let lastTime = Number.NEGATIVE_INFINITY;
  const push = (inv: HistoryEvent, done: HistoryEvent | null) => {
    const unknown = done === null || done.type === "info";
    if (done !== null && done.type === "fail" && inv.f !== "cas") return; // never happened
    // A read whose result is unknown constrains nothing and changes nothing: leave it out.
    if (unknown && (inv.f === "read" || inv.f === "get")) return;
    const isCasFail = done !== null && done.type === "fail" && inv.f === "cas";
    ops.push({
      id: ops.length,
      process: inv.process,
      f: inv.f,
      key: inv.key ?? "",
      input: inv.value,
      output: unknown ? null : done!.value,
      known: !unknown,
      ok: !isCasFail,
      call: inv.time,
      ret: unknown ? Number.POSITIVE_INFINITY : done!.time,
    });
  };
  events.forEach((ev, line) => {
    if (ev.time < lastTime) throw new HistoryError(`event ${line + 1}: time goes backwards`);
    lastTime = ev.time;
    if (ev.type === "invoke") {
      if (open.has(ev.process)) throw new HistoryError(`event ${line + 1}: process ${ev.process} invokes while an operation is open`);
      open.set(ev.process, { ev, line });
      return;
    }
    const inv = open.get(ev.process);
    if (inv === undefined) throw new HistoryError(`event ${line + 1}: completion for process ${ev.process} without an invocation`);
    if (inv.ev.f !== ev.f) throw new HistoryError(`event ${line + 1}: completion ${ev.f} does not match invocation ${inv.ev.f}`);
    open.delete(ev.process);
    push(inv.ev, ev);
  });
  for (const { ev } of open.values()) push(ev, null);
  ops.sort((a, b) => a.call - b.call || a.id - b.id);
  ops.forEach((op, i) => (op.id = i));
  return ops;
}

export function describeOperation(op: Operation): string {
  const fmt = (v: unknown) => JSON.stringify(v ?? null);
  const key = op.key !== "" ? ` ${JSON.stringify(op.key)}` : "";
  const result = !op.known ? "unknown" : op.f === "cas" ? (op.ok ? "ok" : "fail") : fmt(op.output);
  const ret = Number.isFinite(op.ret) ? String(op.ret) : "open";
  return `process ${op.process}: ${op.f}${key} ${fmt(op.input)} -> ${result}  [${op.call}, ${ret}]`;
}

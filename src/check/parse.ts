/**
 * Readers for history files: Shoal's JSON-lines format, Jepsen's text log (single register) and
 * Jepsen's EDN history (key-value map). Each turns text into HistoryEvents in time order.
 * See docs/history-format.md for the JSON-lines format.
 */
import { type EventType, type Fn, type HistoryEvent, HistoryError } from "./history.js";

export type HistoryFormat = "jsonl" | "jepsen-log" | "edn";

const EVENT_TYPES = new Set<EventType>(["invoke", "ok", "fail", "info"]);
const FNS = new Set<Fn>(["read", "write", "cas", "get", "put", "append", "delete"]);

export function detectFormat(text: string): HistoryFormat {
  const first = text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  if (first.startsWith("{:")) return "edn";
  if (first.startsWith("{")) return "jsonl";
  if (first.includes("jepsen.util")) return "jepsen-log";
  throw new HistoryError("unrecognized history format (expected JSON lines, a Jepsen log or Jepsen EDN)");
}

export function parseHistory(text: string, format: HistoryFormat = detectFormat(text)): HistoryEvent[] {
  switch (format) {
    case "jsonl":
      return parseJsonLines(text);
    case "jepsen-log":
      return parseJepsenLog(text);
    case "edn":
      return parseEdn(text);
  }
}

function checkEvent(ev: HistoryEvent, where: string): HistoryEvent {
  if (!Number.isInteger(ev.process)) throw new HistoryError(`${where}: process must be an integer`);
  if (!EVENT_TYPES.has(ev.type)) throw new HistoryError(`${where}: unknown type ${JSON.stringify(ev.type)}`);
  if (!FNS.has(ev.f)) throw new HistoryError(`${where}: unknown f ${JSON.stringify(ev.f)}`);
  if (ev.f === "cas" && ev.type === "invoke" && !(Array.isArray(ev.value) && ev.value.length === 2)) {
    throw new HistoryError(`${where}: cas needs value [expected, new]`);
  }
  return ev;
}

export function parseJsonLines(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw new HistoryError(`line ${i + 1}: not JSON (${(e as Error).message})`);
    }
    const ev: HistoryEvent = {
      process: raw.process as number,
      type: raw.type as EventType,
      f: raw.f as Fn,
      value: raw.value ?? null,
      time: typeof raw.time === "number" ? raw.time : i,
    };
    if (typeof raw.key === "string") ev.key = raw.key;
    events.push(checkEvent(ev, `line ${i + 1}`));
  });
  return events;
}

/** Parses the value column of a Jepsen log line: nil, a number, [a b], or a :keyword. */
function parseJepsenValue(s: string): unknown {
  const t = s.trim();
  if (t === "" || t === "nil") return null;
  if (t.startsWith("[") && t.endsWith("]")) {
    return t.slice(1, -1).trim().split(/\s+/).map(parseJepsenValue);
  }
  if (t.startsWith(":")) return t; // e.g. :timed-out
  const n = Number(t);
  return Number.isNaN(n) ? t : n;
}

export function parseJepsenLog(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const re = /jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(\w+)\s*(.*)$/;
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const m = re.exec(line);
    if (m === null) throw new HistoryError(`line ${i + 1}: not a Jepsen log line`);
    let type = m[2] as EventType;
    const f = m[3] as Fn;
    let value = parseJepsenValue(m[4]!);
    // A failed read that timed out is an unknown outcome, not a failure.
    if (value === ":timed-out") {
      type = "info";
      value = null;
    }
    events.push(checkEvent({ process: Number(m[1]), type, f, value, time: i }, `line ${i + 1}`));
  });
  return events;
}

/** Parses one EDN map of keywords to ints, keywords, strings or nil (the subset Jepsen histories use). */
function parseEdnMap(line: string, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const body = line.trim();
  if (!body.startsWith("{") || !body.endsWith("}")) throw new HistoryError(`${where}: not an EDN map`);
  const re = /:([\w-]+)\s+("(?:[^"\\]|\\.)*"|:[\w-]+|-?\d+|nil)\s*,?/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body)) !== null) {
    const v = m[2]!;
    out[m[1]!] = v === "nil" ? null : v.startsWith('"') ? JSON.parse(v) : v.startsWith(":") ? v.slice(1) : Number(v);
  }
  return out;
}

export function parseEdn(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `line ${i + 1}`;
    const m = parseEdnMap(line, where);
    const ev: HistoryEvent = {
      process: m.process as number,
      type: m.type as EventType,
      f: m.f as Fn,
      value: m.value ?? null,
      time: i,
    };
    if (typeof m.key === "string") ev.key = m.key;
    events.push(checkEvent(ev, where));
  });
  return events;
}

/**
 * Request bodies are parsed and checked here, before any route sees them, so that nothing a client
 * sends can exhaust a node (deep nesting once overflowed the stack of the log's encoder and killed the
 * process) or be stored as something else than what was sent (1e400 became null; integers past 2^53
 * lost digits). The rules are I-JSON's (RFC 7493): numbers must be finite, integers exact.
 */
import { ApiError } from "./error-table.js";

export interface JsonLimits {
  /** Deepest nesting of arrays and objects in a body. */
  depthMax: number;
  /** Object keys plus array elements in a whole body. */
  fieldsMax: number;
  /** Longest object key, in UTF-16 code units. */
  keyLengthMax: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { depthMax: 32, fieldsMax: 10_000, keyLengthMax: 1024 };

/** A JSON path for messages: payload.items[3].name */
function pathOf(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? (parent === "" ? key : `${parent}.${key}`) : `${parent}[${JSON.stringify(key)}]`;
}

/**
 * Parses a body and checks it against the limits and the number rules; throws ApiError naming the
 * first offending field. The walk is bounded by `depthMax`, so it cannot overflow the stack itself.
 * `itemsOf`: the top-level list of a batch, whose every item is held to the field limit on its own.
 */
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function parseJsonBody(bytes: Buffer, limits: JsonLimits, itemsOf?: string): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError("invalid_string", "the body is not UTF-8");
  }
  const unsafeIntegers = unsafeIntegerLiterals(text);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError("invalid_json", `the body is not valid JSON: ${(e as Error).message}`);
  }
  let fields = 0;
  // A leaf's path is built only for an error: a batch of vectors has ~130,000 numbers, and a path string
  // for each was most of the walk's time.
  const checkLeaf = (v: unknown, parent: string, key?: string | number): void => {
    const at = (): string => (key === undefined ? parent : pathOf(parent, key));
    if (typeof v === "number") {
      if (!Number.isFinite(v)) {
        const path = at();
        throw new ApiError("unsafe_number", `${path || "the body"}: a number too large to store (not finite)`, { field: path });
      }
      // 1.5e308 is a float and stays one; 9007199254740993 written as an integer would not stay itself.
      if (unsafeIntegers.size > 0 && unsafeIntegers.has(v)) {
        const path = at();
        throw new ApiError("unsafe_number", `${path || "the body"}: an integer beyond ±(2^53-1) loses digits (it reads as ${v}); send it as a string`, { field: path });
      }
    } else if (typeof v === "string" && LONE_SURROGATE.test(v)) {
      throw unpairedSurrogate(at());
    }
  };
  const walk = (v: unknown, path: string, depth: number): void => {
    if (typeof v !== "object" || v === null) return checkLeaf(v, path);
    if (depth >= limits.depthMax) {
      throw new ApiError("limit_exceeded", `${path || "the body"}: nested deeper than ${limits.depthMax} levels`, { limit: "depthMax", max: limits.depthMax });
    }
    const child = (c: unknown, key: string | number): void => {
      if (typeof c === "object" && c !== null) walk(c, pathOf(path, key), depth + 1);
      else checkLeaf(c, path, key);
    };
    if (Array.isArray(v)) {
      if (itemsOf !== undefined && depth === 1 && path === itemsOf) {
        // A batch: each item has the limits of a body of its own (the route bounds the count).
        const before = fields;
        for (let i = 0; i < v.length; i++) {
          fields = 0;
          child(v[i], i);
        }
        fields = before + 1;
        return;
      }
      // A vector (a list of numbers under the key `vector`) is one field: its length is the schema's to judge.
      const vector = (path === "vector" || path.endsWith(".vector")) && v.every((x) => typeof x === "number");
      fields += vector ? 1 : v.length;
      if (fields > limits.fieldsMax) throw fieldsExceeded(limits);
      for (let i = 0; i < v.length; i++) child(v[i], i);
      return;
    }
    const keys = Object.keys(v);
    fields += keys.length;
    if (fields > limits.fieldsMax) throw fieldsExceeded(limits);
    for (const k of keys) {
      if (LONE_SURROGATE.test(k)) throw unpairedSurrogate(pathOf(path, k));
      if (k === "__proto__") throw new ApiError("forbidden_key", `${pathOf(path, k)}: the key "__proto__" is not accepted`, { field: pathOf(path, k) });
      if (k.length > limits.keyLengthMax) {
        throw new ApiError("limit_exceeded", `${path || "the body"}: a key of ${k.length} characters (at most ${limits.keyLengthMax})`, { limit: "keyLengthMax", max: limits.keyLengthMax });
      }
      child((v as Record<string, unknown>)[k], k);
    }
  };
  walk(value, "", 0);
  return value;
}

/**
 * The values of integer literals (digits only, no fraction or exponent) beyond ±(2^53-1) in a JSON
 * text: JSON.parse cannot tell them from floats of the same value, the text can. Strings are skipped.
 */
function unsafeIntegerLiterals(text: string): Set<number> {
  const found = new Set<number>();
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip a string, escapes included (an unterminated one is JSON.parse's to refuse).
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      continue;
    }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue;
    // A number token: count its digits, and whether it is more than digits (a fraction or exponent).
    let end = i + 1;
    let digits = c === 0x2d ? 0 : 1;
    let plain = true;
    for (; end < text.length; end++) {
      const d = text.charCodeAt(end);
      if (d >= 0x30 && d <= 0x39) digits++;
      else if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) plain = false;
      else break;
    }
    // 16 digits or more can pass 2^53 - 1 (9007199254740991 has 16). Vectors' floats skip this at once.
    if (plain && digits >= 16) {
      const token = text.slice(i, end);
      if (/^-?[0-9]{16,}$/.test(token) && !Number.isSafeInteger(Number(token))) found.add(Number(token));
    }
    i = end - 1;
  }
  return found;
}

/** I-JSON: strings are Unicode; "\ud800" alone would be stored as something else than was sent. */
function unpairedSurrogate(path: string): ApiError {
  return new ApiError("invalid_string", `${path || "the body"}: a string with an unpaired surrogate (e.g. \\ud800 alone) is not Unicode text`, { field: path });
}

function fieldsExceeded(limits: JsonLimits): ApiError {
  return new ApiError("limit_exceeded", `the body has more than ${limits.fieldsMax} fields (object keys and array elements)`, { limit: "fieldsMax", max: limits.fieldsMax });
}

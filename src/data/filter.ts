/**
 * The filter language of search, count, scan and delete by filter (issue 14; REQUIREMENTS DATA-2,
 * DATA-5), after Qdrant's: a filter is `{must?, should?, must_not?}`, each a list of conditions; a
 * condition is a filter itself or one on a payload field, named by a dotted path:
 *   {"key": "color", "match": "red"}                 equal to a value (string, number, boolean)
 *   {"key": "color", "match": {"any": ["red", "blue"]}} equal to one of them
 *   {"key": "price", "range": {"gte": 10, "lt": 20}} a number within the bounds
 *   {"key": "tags", "exists": true}                   present and not null
 * A filter holds when every `must` condition holds, at least one `should` condition does (if any are
 * given), and no `must_not` condition does; `{}` holds for every record. A field that is an array holds
 * a condition when one of its elements does, and a path through arrays reaches into every element
 * (`"items.sku"` reads the `sku` of each item), so a record may offer several values for one key.
 *
 * parseFilter checks a filter from the outside world (bounded, with the offending part's path in the
 * error) and returns it typed; matches evaluates one on a payload. Pure: no I/O, no clock.
 */
import { DOTTED_PATH_LENGTH_MAX, dottedPathProblem } from "../util/dotted-path.js";

/** A value a `match` compares with: JSON's scalars, null excepted (use `exists`). */
export type MatchValue = string | number | boolean;

export interface RangeBounds {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export type FieldCondition =
  | { key: string; match: MatchValue }
  | { key: string; match: { any: MatchValue[] } }
  | { key: string; range: RangeBounds }
  | { key: string; exists: boolean };

export type Condition = FieldCondition | Filter;

export interface Filter {
  must?: Condition[];
  should?: Condition[];
  must_not?: Condition[];
}

/** Bounds on a filter, so that a request cannot make a node work or allocate without limit. */
export const FILTER_LIMITS = {
  /** Filters nested in filters, the outermost counted. */
  depthMax: 8,
  /** Conditions in the whole filter, nested ones included. */
  conditionsMax: 256,
  /** Values of one `match.any`. */
  anyValuesMax: 1024,
  /** Characters of a key (a dotted path). */
  keyLengthMax: DOTTED_PATH_LENGTH_MAX,
  /** Characters of a string compared with. */
  valueLengthMax: 4096,
} as const;

/** A filter that is not one (HTTP 400 `invalid_filter`): `path` says where, e.g. `filter.must[1].range`. */
export class FilterError extends Error {
  override name = "FilterError";
  readonly code = "invalid_filter";

  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

const CLAUSES = ["must", "should", "must_not"] as const;
const RANGE_BOUNDS = ["gt", "gte", "lt", "lte"] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks `input` and returns it as a Filter; throws FilterError naming the first thing wrong. */
export function parseFilter(input: unknown, path = "filter"): Filter {
  const budget = { conditions: 0 };
  return parseFilterAt(input, path, 1, budget);
}

function parseFilterAt(input: unknown, path: string, depth: number, budget: { conditions: number }): Filter {
  if (!isObject(input)) throw new FilterError(path, "a filter is an object with `must`, `should` and/or `must_not`");
  if (depth > FILTER_LIMITS.depthMax) throw new FilterError(path, `filters nest at most ${FILTER_LIMITS.depthMax} deep`);
  const out: Filter = {};
  for (const [name, value] of Object.entries(input)) {
    if (!(CLAUSES as readonly string[]).includes(name)) throw new FilterError(`${path}.${name}`, "unknown clause: a filter takes `must`, `should` and `must_not`");
    if (!Array.isArray(value)) throw new FilterError(`${path}.${name}`, "a clause is a list of conditions");
    out[name as (typeof CLAUSES)[number]] = value.map((c, i) => parseCondition(c, `${path}.${name}[${i}]`, depth, budget));
  }
  return out;
}

function parseCondition(input: unknown, path: string, depth: number, budget: { conditions: number }): Condition {
  budget.conditions++;
  if (budget.conditions > FILTER_LIMITS.conditionsMax) throw new FilterError(path, `a filter holds at most ${FILTER_LIMITS.conditionsMax} conditions`);
  if (!isObject(input)) throw new FilterError(path, "a condition is an object");
  if (!("key" in input)) return parseFilterAt(input, path, depth + 1, budget);
  const key = parseKey(input.key, `${path}.key`);
  const kinds = ["match", "range", "exists"].filter((k) => k in input);
  if (kinds.length !== 1) throw new FilterError(path, "a field condition has exactly one of `match`, `range` and `exists`");
  const extra = Object.keys(input).find((k) => k !== "key" && k !== kinds[0]);
  if (extra !== undefined) throw new FilterError(`${path}.${extra}`, "unknown field of a condition");
  if ("exists" in input) {
    if (typeof input.exists !== "boolean") throw new FilterError(`${path}.exists`, "`exists` is true or false");
    return { key, exists: input.exists };
  }
  if ("range" in input) return { key, range: parseRange(input.range, `${path}.range`) };
  const match = input.match;
  if (isObject(match)) {
    const names = Object.keys(match);
    if (names.length !== 1 || names[0] !== "any" || !Array.isArray(match.any)) throw new FilterError(`${path}.match`, "`match` is a value or `{\"any\": [values]}`");
    if (match.any.length > FILTER_LIMITS.anyValuesMax) throw new FilterError(`${path}.match.any`, `at most ${FILTER_LIMITS.anyValuesMax} values`);
    return { key, match: { any: match.any.map((v, i) => parseValue(v, `${path}.match.any[${i}]`)) } };
  }
  return { key, match: parseValue(match, `${path}.match`) };
}

function parseKey(key: unknown, path: string): string {
  const problem = dottedPathProblem(key);
  if (problem !== null) throw new FilterError(path, problem);
  return key as string;
}

function parseValue(v: unknown, path: string): MatchValue {
  if (typeof v === "boolean") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new FilterError(path, "a number compared with is finite");
    return v;
  }
  if (typeof v === "string") {
    if (v.length > FILTER_LIMITS.valueLengthMax) throw new FilterError(path, `a string compared with has at most ${FILTER_LIMITS.valueLengthMax} characters`);
    return v;
  }
  throw new FilterError(path, "a value compared with is a string, a number or a boolean (use `exists` for null)");
}

function parseRange(input: unknown, path: string): RangeBounds {
  if (!isObject(input)) throw new FilterError(path, "a range is an object of `gt`, `gte`, `lt` and/or `lte`");
  const out: RangeBounds = {};
  for (const [name, value] of Object.entries(input)) {
    if (!(RANGE_BOUNDS as readonly string[]).includes(name)) throw new FilterError(`${path}.${name}`, "unknown bound: a range takes `gt`, `gte`, `lt` and `lte`");
    if (typeof value !== "number" || !Number.isFinite(value)) throw new FilterError(`${path}.${name}`, "a bound is a finite number");
    out[name as (typeof RANGE_BOUNDS)[number]] = value;
  }
  if (Object.keys(out).length === 0) throw new FilterError(path, "a range has at least one bound");
  if (out.gt !== undefined && out.gte !== undefined) throw new FilterError(path, "a range has `gt` or `gte`, not both");
  if (out.lt !== undefined && out.lte !== undefined) throw new FilterError(path, "a range has `lt` or `lte`, not both");
  return out;
}

/**
 * The values a dotted path reaches in `payload`: none when a part is missing, several when the path
 * goes through arrays; an array at the end gives its elements. Own properties only.
 */
export function valuesAt(payload: unknown, key: string): unknown[] {
  let level: unknown[] = [payload];
  for (const segment of key.split(".")) {
    const next: unknown[] = [];
    for (const v of level) {
      for (const item of Array.isArray(v) ? v : [v]) {
        if (isObject(item) && Object.hasOwn(item, segment)) next.push(item[segment]);
      }
    }
    level = next;
  }
  return level.flatMap((v) => (Array.isArray(v) ? v : [v]));
}

function isFilter(c: Condition): c is Filter {
  return !("key" in c);
}

/** A condition's values of a key: read from a payload, or from a payload index. */
export type ValuesOf = (key: string) => readonly unknown[];

function holds(c: Condition, valuesOf: ValuesOf): boolean {
  if (isFilter(c)) return matchesWith(c, valuesOf);
  const values = valuesOf(c.key);
  if ("exists" in c) return values.some((v) => v !== null && v !== undefined) === c.exists;
  if ("range" in c) {
    const r = c.range;
    return values.some((v) => typeof v === "number" && (r.gt === undefined || v > r.gt) && (r.gte === undefined || v >= r.gte) &&
      (r.lt === undefined || v < r.lt) && (r.lte === undefined || v <= r.lte));
  }
  const m = c.match;
  if (typeof m === "object") return values.some((v) => m.any.includes(v as MatchValue));
  return values.includes(m);
}

/** Whether `payload` satisfies `filter` (checked by parseFilter). */
export function matches(filter: Filter, payload: unknown): boolean {
  return matchesWith(filter, (key) => valuesAt(payload, key));
}

/** Whether a record whose values of each key `valuesOf` gives satisfies `filter`. */
export function matchesWith(filter: Filter, valuesOf: ValuesOf): boolean {
  if (filter.must !== undefined && !filter.must.every((c) => holds(c, valuesOf))) return false;
  if (filter.must_not !== undefined && filter.must_not.some((c) => holds(c, valuesOf))) return false;
  if (filter.should !== undefined && filter.should.length > 0 && !filter.should.some((c) => holds(c, valuesOf))) return false;
  return true;
}

/**
 * The part of `filter` that keys in `indexed` alone decide and that every matching record satisfies:
 * its `must` conditions on indexed keys (nested filters only when all their keys are indexed), or null
 * when there is none. The whole filter when every key it reads is indexed (`complete`).
 */
export function indexedPart(filter: Filter, indexed: ReadonlySet<string>): { part: Filter | null; complete: boolean } {
  if (filterKeys(filter).every((k) => indexed.has(k))) return { part: filter, complete: true };
  const must = (filter.must ?? []).filter((c) => (isFilter(c) ? filterKeys(c).every((k) => indexed.has(k)) : indexed.has(c.key)));
  return { part: must.length > 0 ? { must } : null, complete: false };
}

/** Every key a filter reads, once each: what a plan asks the payload indexes about. */
export function filterKeys(filter: Filter): string[] {
  const keys = new Set<string>();
  const walk = (f: Filter) => {
    for (const clause of CLAUSES) {
      for (const c of f[clause] ?? []) {
        if (isFilter(c)) walk(c);
        else keys.add(c.key);
      }
    }
  };
  walk(filter);
  return [...keys];
}

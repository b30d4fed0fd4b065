/**
 * A replica's payload index (issue 14, DATA-2): for each key a collection declares, the records holding
 * each value, so that a filter over declared keys is answered as a set of records without reading a
 * payload. Records are named by their label (a small integer the shard index gives each record id).
 *
 * Every value a key's dotted path reaches is indexed as it is (valuesAt), whatever type the key was
 * declared with: a filter answered from the index then holds exactly where it would hold on the
 * payload (filter.ts), and no record is missed because one of its values has another type.
 */
import { type Condition, type Filter, type MatchValue, type ValuesOf } from "./filter.js";
import { assert } from "../util/assert.js";

type Scalar = string | number | boolean;
const NO_VALUES: readonly unknown[] = [];

function isScalar(v: unknown): v is Scalar {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

export class PayloadIndex {
  /** key -> value -> labels. Invariant: no empty inner set or map is kept. */
  private readonly postings = new Map<string, Map<Scalar, Set<number>>>();
  /** key -> labels with at least one value that is not null (what `exists: true` asks). */
  private readonly present = new Map<string, Set<number>>();
  /** label -> its values of each key (scalars only; null is recorded through `present` alone). */
  private readonly byLabel = new Map<number, Record<string, Scalar[]>>();

  constructor(readonly keys: readonly string[]) {
    for (const k of keys) {
      this.postings.set(k, new Map());
      this.present.set(k, new Set());
    }
  }

  get size(): number {
    return this.byLabel.size;
  }

  /** Indexes a record's values (the index's keys of `fields`; a missing key: no value). */
  set(label: number, fields: Readonly<Record<string, readonly unknown[]>>): void {
    this.remove(label);
    const own: Record<string, Scalar[]> = {};
    for (const key of this.keys) {
      const values = fields[key] ?? NO_VALUES;
      const scalars = values.filter(isScalar);
      if (scalars.length > 0) own[key] = scalars;
      if (values.some((v) => v !== null && v !== undefined)) this.present.get(key)!.add(label);
      const byValue = this.postings.get(key)!;
      for (const v of scalars) {
        let labels = byValue.get(v);
        if (labels === undefined) byValue.set(v, (labels = new Set()));
        labels.add(label);
      }
    }
    this.byLabel.set(label, own);
  }

  remove(label: number): void {
    const own = this.byLabel.get(label);
    if (own === undefined) return;
    this.byLabel.delete(label);
    for (const key of this.keys) {
      this.present.get(key)!.delete(label);
      const byValue = this.postings.get(key)!;
      for (const v of own[key] ?? []) {
        const labels = byValue.get(v);
        if (labels === undefined) continue;
        labels.delete(label);
        if (labels.size === 0) byValue.delete(v);
      }
    }
  }

  /** A record's indexed values, for filter.ts's matchesWith. */
  valuesOf(label: number): ValuesOf {
    const own = this.byLabel.get(label);
    return (key) => own?.[key] ?? NO_VALUES;
  }

  /**
   * The labels of the records satisfying `filter`, every key of which is indexed. A new set: the caller
   * may keep and change it.
   */
  select(filter: Filter): Set<number> {
    let out: Set<number> | null = null;
    const must = (filter.must ?? []).map((c) => this.holding(c)).sort((a, b) => a.size - b.size);
    for (const s of must) out = out === null ? new Set(s) : intersect(out, s);
    if (filter.should !== undefined && filter.should.length > 0) {
      const any = new Set<number>();
      for (const c of filter.should) for (const l of this.holding(c)) any.add(l);
      out = out === null ? any : intersect(out, any);
    }
    if (filter.must_not !== undefined && filter.must_not.length > 0) {
      out ??= new Set(this.byLabel.keys());
      for (const c of filter.must_not) for (const l of this.holding(c)) out.delete(l);
    }
    return out ?? new Set(this.byLabel.keys());
  }

  /** The labels holding one condition: possibly the index's own set (read, never change it). */
  private holding(c: Condition): ReadonlySet<number> {
    if (!("key" in c)) return this.select(c);
    const byValue = this.postings.get(c.key);
    assert(byValue !== undefined, () => `key ${c.key} is not indexed`);
    if ("exists" in c) {
      const present = this.present.get(c.key)!;
      if (c.exists) return present;
      const absent = new Set(this.byLabel.keys());
      for (const l of present) absent.delete(l);
      return absent;
    }
    if ("range" in c) {
      const r = c.range;
      const out = new Set<number>();
      for (const [v, labels] of byValue) {
        if (typeof v !== "number") continue;
        if ((r.gt === undefined || v > r.gt) && (r.gte === undefined || v >= r.gte) && (r.lt === undefined || v < r.lt) && (r.lte === undefined || v <= r.lte)) {
          for (const l of labels) out.add(l);
        }
      }
      return out;
    }
    const m = c.match;
    if (typeof m !== "object") return byValue.get(m) ?? new Set();
    const out = new Set<number>();
    for (const v of m.any as MatchValue[]) for (const l of byValue.get(v) ?? []) out.add(l);
    return out;
  }
}

function intersect(a: Set<number>, b: ReadonlySet<number>): Set<number> {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  const out = new Set<number>();
  for (const x of small) if (large.has(x)) out.add(x);
  return out;
}

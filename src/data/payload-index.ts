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
import { LabelSet } from "./label-set.js";

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
   * The labels of the records satisfying `filter`, every key of which is indexed, as a new set over
   * [0, end) (every label of the index is below `end`).
   */
  select(filter: Filter, end: number): LabelSet {
    let out: LabelSet | null = null;
    for (const c of filter.must ?? []) {
      const s = this.holding(c, end);
      out = out === null ? s : out.intersect(s);
    }
    if (filter.should !== undefined && filter.should.length > 0) {
      let any: LabelSet | null = null;
      for (const c of filter.should) {
        const s = this.holding(c, end);
        any = any === null ? s : any.union(s);
      }
      out = out === null ? any! : out.intersect(any!);
    }
    if (filter.must_not !== undefined && filter.must_not.length > 0) {
      out ??= this.all(end);
      for (const c of filter.must_not) out.subtract(this.holding(c, end));
    }
    return out ?? this.all(end);
  }

  private all(end: number): LabelSet {
    return LabelSet.of(end, this.byLabel.keys());
  }

  /** The labels holding one condition, as a new set. */
  private holding(c: Condition, end: number): LabelSet {
    if (!("key" in c)) return this.select(c, end);
    const byValue = this.postings.get(c.key);
    assert(byValue !== undefined, () => `key ${c.key} is not indexed`);
    if ("exists" in c) {
      const present = LabelSet.of(end, this.present.get(c.key)!);
      return c.exists ? present : this.all(end).subtract(present);
    }
    const out = new LabelSet(end);
    const addAll = (labels: ReadonlySet<number> | undefined) => {
      if (labels !== undefined) for (const l of labels) out.add(l);
    };
    if ("range" in c) {
      const r = c.range;
      for (const [v, labels] of byValue) {
        if (typeof v !== "number") continue;
        if ((r.gt === undefined || v > r.gt) && (r.gte === undefined || v >= r.gte) && (r.lt === undefined || v < r.lt) && (r.lte === undefined || v <= r.lte)) addAll(labels);
      }
      return out;
    }
    const m = c.match;
    if (typeof m !== "object") addAll(byValue.get(m));
    else for (const v of m.any as MatchValue[]) addAll(byValue.get(v));
    return out;
  }
}

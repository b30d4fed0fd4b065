import { test } from "node:test";
import assert from "node:assert/strict";
import { LabelSet } from "./label-set.js";
import { Rng } from "../util/rng.js";

const labelsOf = (s: LabelSet): number[] => {
  const out: number[] = [];
  s.forEach((l) => out.push(l));
  return out;
};

test("a label set holds what a Set would, in increasing order, through intersections, unions and differences", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rng = new Rng(seed);
    const end = 1 + rng.int(3000);
    const draw = () => {
      const js = new Set<number>();
      const n = rng.int(end);
      for (let i = 0; i < n; i++) js.add(rng.int(end));
      return { bits: LabelSet.of(end, js), js };
    };
    const a = draw();
    const b = draw();
    const sorted = (xs: Iterable<number>) => [...xs].sort((x, y) => x - y);
    assert.deepEqual(labelsOf(a.bits), sorted(a.js), `seed ${seed}`);
    assert.equal(a.bits.size, a.js.size);
    for (let l = -1; l <= end; l++) assert.equal(a.bits.has(l), a.js.has(l), `seed ${seed} label ${l}`);
    const and = LabelSet.of(end, a.js).intersect(b.bits);
    assert.deepEqual(labelsOf(and), sorted([...a.js].filter((l) => b.js.has(l))));
    assert.equal(and.size, [...a.js].filter((l) => b.js.has(l)).length);
    const or = LabelSet.of(end, a.js).union(b.bits);
    assert.deepEqual(labelsOf(or), sorted(new Set([...a.js, ...b.js])));
    assert.equal(or.size, new Set([...a.js, ...b.js]).size);
    const minus = LabelSet.of(end, a.js).subtract(b.bits);
    assert.deepEqual(labelsOf(minus), sorted([...a.js].filter((l) => !b.js.has(l))));
    assert.equal(minus.size, [...a.js].filter((l) => !b.js.has(l)).length);
  }
});

test("a label set refuses labels outside its space and sets over another space", () => {
  const s = new LabelSet(40);
  s.add(0);
  s.add(31);
  s.add(32);
  s.add(39);
  s.add(39);
  assert.equal(s.size, 4);
  assert.deepEqual(labelsOf(s), [0, 31, 32, 39]);
  assert.throws(() => s.add(40));
  assert.throws(() => s.add(-1));
  assert.throws(() => s.union(new LabelSet(41)));
});

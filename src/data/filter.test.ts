import { test } from "node:test";
import assert from "node:assert/strict";

import { assertRefused } from "../util/testing.js";
import { FILTER_LIMITS, FilterError, filterKeys, matches, parseFilter, valuesAt } from "./filter.js";

const shoe = { name: "runner", color: "red", price: 89.5, stock: 0, tags: ["sport", "sale"], brand: { name: "Acme", country: "NL" },
  sizes: [{ eu: 42, left: 3 }, { eu: 43, left: 0 }], discontinued: null, active: true };

/** Whether the filter, as a client would send it, holds for the shoe. */
const holds = (f: unknown, payload: unknown = shoe) => matches(parseFilter(f), payload);

test("an empty filter holds for every record", () => {
  assert.equal(holds({}), true);
  assert.equal(holds({}, null), true);
  assert.equal(holds({ must: [], should: [], must_not: [] }), true);
});

test("match: equal to a string, a number or a boolean, strictly (no conversions)", () => {
  assert.equal(holds({ must: [{ key: "color", match: "red" }] }), true);
  assert.equal(holds({ must: [{ key: "color", match: "blue" }] }), false);
  assert.equal(holds({ must: [{ key: "price", match: 89.5 }] }), true);
  assert.equal(holds({ must: [{ key: "stock", match: 0 }] }), true);
  assert.equal(holds({ must: [{ key: "stock", match: false }] }), false, "0 is not false");
  assert.equal(holds({ must: [{ key: "active", match: true }] }), true);
  assert.equal(holds({ must: [{ key: "price", match: "89.5" }] }), false, "a string is not the number");
  assert.equal(holds({ must: [{ key: "missing", match: "red" }] }), false, "a missing field matches nothing");
});

test("match any: equal to one of the values; an array field holds when one of its elements does", () => {
  assert.equal(holds({ must: [{ key: "color", match: { any: ["blue", "red"] } }] }), true);
  assert.equal(holds({ must: [{ key: "color", match: { any: ["blue", "green"] } }] }), false);
  assert.equal(holds({ must: [{ key: "color", match: { any: [] } }] }), false, "none of no values");
  assert.equal(holds({ must: [{ key: "tags", match: "sale" }] }), true);
  assert.equal(holds({ must: [{ key: "tags", match: { any: ["new", "sport"] } }] }), true);
  assert.equal(holds({ must: [{ key: "tags", match: "new" }] }), false);
});

test("range: gt, gte, lt, lte on numbers; other types never fall in a range", () => {
  assert.equal(holds({ must: [{ key: "price", range: { gte: 89.5 } }] }), true);
  assert.equal(holds({ must: [{ key: "price", range: { gt: 89.5 } }] }), false);
  assert.equal(holds({ must: [{ key: "price", range: { lte: 89.5 } }] }), true);
  assert.equal(holds({ must: [{ key: "price", range: { lt: 89.5 } }] }), false);
  assert.equal(holds({ must: [{ key: "price", range: { gt: 50, lt: 100 } }] }), true);
  assert.equal(holds({ must: [{ key: "price", range: { gt: 90, lt: 100 } }] }), false);
  assert.equal(holds({ must: [{ key: "color", range: { gt: 0 } }] }), false, "a string is not in a range");
  assert.equal(holds({ must: [{ key: "active", range: { gte: 0 } }] }), false, "nor is a boolean");
  assert.equal(holds({ must: [{ key: "missing", range: { gte: 0 } }] }), false);
});

test("exists: present and not null", () => {
  assert.equal(holds({ must: [{ key: "color", exists: true }] }), true);
  assert.equal(holds({ must: [{ key: "missing", exists: true }] }), false);
  assert.equal(holds({ must: [{ key: "discontinued", exists: true }] }), false, "null counts as absent");
  assert.equal(holds({ must: [{ key: "discontinued", exists: false }] }), true);
  assert.equal(holds({ must: [{ key: "stock", exists: true }] }), true, "0 exists");
  assert.equal(holds({ must: [{ key: "missing", exists: false }] }), true);
  assert.equal(holds({ must: [{ key: "color", exists: false }] }), false);
});

test("dotted paths reach nested objects and every element of arrays on the way", () => {
  assert.equal(holds({ must: [{ key: "brand.country", match: "NL" }] }), true);
  assert.equal(holds({ must: [{ key: "brand.country.code", exists: true }] }), false, "through a string: nothing");
  assert.equal(holds({ must: [{ key: "sizes.eu", match: 43 }] }), true);
  assert.equal(holds({ must: [{ key: "sizes.eu", range: { gt: 43 } }] }), false);
  assert.deepEqual(valuesAt(shoe, "sizes.left"), [3, 0]);
  assert.deepEqual(valuesAt(shoe, "tags"), ["sport", "sale"]);
  assert.deepEqual(valuesAt(shoe, "brand"), [shoe.brand]);
  assert.deepEqual(valuesAt(shoe, "name.length"), [], "no property of a string");
  assert.deepEqual(valuesAt({ a: { toString: 1 } }, "a.constructor"), [], "only own properties");
});

test("must, should and must_not combine: all of must, one of should (when given), none of must_not; filters nest", () => {
  const red = { key: "color", match: "red" };
  const blue = { key: "color", match: "blue" };
  const cheap = { key: "price", range: { lt: 50 } };
  assert.equal(holds({ must: [red, { key: "active", match: true }] }), true);
  assert.equal(holds({ must: [red, cheap] }), false);
  assert.equal(holds({ should: [blue, red] }), true);
  assert.equal(holds({ should: [blue, cheap] }), false);
  assert.equal(holds({ must_not: [blue] }), true);
  assert.equal(holds({ must_not: [blue, red] }), false);
  assert.equal(holds({ must: [red], must_not: [cheap], should: [blue, { key: "tags", match: "sale" }] }), true);
  // (blue or cheap) or not(red): false for the shoe; nested the other way round, true.
  assert.equal(holds({ should: [{ should: [blue, cheap] }, { must_not: [red] }] }), false);
  assert.equal(holds({ must: [{ must_not: [{ must: [blue] }] }] }), true);
});

test("a filter that is not one is refused with the path of its first fault", () => {
  const refused = (f: unknown, path: string, words: RegExp) => assertRefused(() => parseFilter(f), FilterError, "invalid_filter", path, words, f);
  refused([], "filter", /is an object/);
  refused("color = red", "filter", /is an object/);
  refused({ where: [] }, "filter.where", /unknown clause/);
  refused({ must: { key: "a", match: 1 } }, "filter.must", /list of conditions/);
  refused({ must: [7] }, "filter.must[0]", /condition is an object/);
  refused({ must: [{ key: "", match: 1 }] }, "filter.must[0].key", /non-empty/);
  refused({ must: [{ key: "a..b", match: 1 }] }, "filter.must[0].key", /every part/);
  refused({ must: [{ key: "a.__proto__", match: 1 }] }, "filter.must[0].key", /__proto__/);
  refused({ must: [{ key: 3, match: 1 }] }, "filter.must[0].key", /dotted path/);
  refused({ must: [{ key: "a" }] }, "filter.must[0]", /exactly one of/);
  refused({ must: [{ key: "a", match: 1, exists: true }] }, "filter.must[0]", /exactly one of/);
  refused({ must: [{ key: "a", match: 1, boost: 2 }] }, "filter.must[0].boost", /unknown field/);
  refused({ must: [{ key: "a", match: null }] }, "filter.must[0].match", /use `exists`/);
  refused({ must: [{ key: "a", match: [1, 2] }] }, "filter.must[0].match", /string, a number or a boolean/);
  refused({ must: [{ key: "a", match: { all: [1] } }] }, "filter.must[0].match", /any/);
  refused({ should: [{ key: "a", match: { any: [1, {}] } }] }, "filter.should[0].match.any[1]", /string, a number or a boolean/);
  refused({ must: [{ key: "a", range: {} }] }, "filter.must[0].range", /at least one bound/);
  refused({ must: [{ key: "a", range: { from: 1 } }] }, "filter.must[0].range.from", /unknown bound/);
  refused({ must: [{ key: "a", range: { gt: "1" } }] }, "filter.must[0].range.gt", /finite number/);
  refused({ must: [{ key: "a", range: { gt: 1, gte: 1 } }] }, "filter.must[0].range", /not both/);
  refused({ must: [{ key: "a", range: { lt: 1, lte: 1 } }] }, "filter.must[0].range", /not both/);
  refused({ must: [{ key: "a", exists: "yes" }] }, "filter.must[0].exists", /true or false/);
  refused({ must_not: [{ must: [{ should: [{ key: "a", exists: 1 }] }] }] }, "filter.must_not[0].must[0].should[0].exists", /true or false/);
});

test("a filter is bounded: nesting depth, conditions, values of `any`, key and string lengths", () => {
  let deep: unknown = { key: "a", exists: true };
  for (let i = 0; i < FILTER_LIMITS.depthMax; i++) deep = { must: [deep] };
  assert.doesNotThrow(() => parseFilter(deep), "as deep as allowed");
  assert.throws(() => parseFilter({ must: [deep] }), /nest at most 8/);
  const many = (n: number) => ({ should: Array.from({ length: n }, (_, i) => ({ key: "a", match: i })) });
  assert.doesNotThrow(() => parseFilter(many(FILTER_LIMITS.conditionsMax)));
  assert.throws(() => parseFilter(many(FILTER_LIMITS.conditionsMax + 1)), /at most 256 conditions/);
  const anyOf = (n: number) => ({ must: [{ key: "a", match: { any: Array.from({ length: n }, (_, i) => i) } }] });
  assert.doesNotThrow(() => parseFilter(anyOf(FILTER_LIMITS.anyValuesMax)));
  assert.throws(() => parseFilter(anyOf(FILTER_LIMITS.anyValuesMax + 1)), /at most 1024 values/);
  assert.throws(() => parseFilter({ must: [{ key: "k".repeat(FILTER_LIMITS.keyLengthMax + 1), exists: true }] }), /at most 256 characters/);
  assert.throws(() => parseFilter({ must: [{ key: "a", match: "v".repeat(FILTER_LIMITS.valueLengthMax + 1) }] }), /at most 4096 characters/);
});

test("filterKeys lists every key a filter reads, nested ones included, once each", () => {
  const f = parseFilter({ must: [{ key: "color", match: "red" }, { should: [{ key: "price", range: { lt: 5 } }, { key: "color", exists: true }] }],
    must_not: [{ key: "brand.country", match: "NL" }] });
  assert.deepEqual(filterKeys(f).sort(), ["brand.country", "color", "price"]);
  assert.deepEqual(filterKeys({}), []);
});

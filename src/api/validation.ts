/**
 * How request schemas are checked. Bodies are JSON and keep their types: `"ifVersion": null` or `"0"` is
 * refused, never read as 0 (fastify's default coerces bodies too). Paths and query strings are text, so
 * their integers are read from text, and only when the text is an exact integer: `1e400`, `Infinity`
 * and `9007199254740993` are refused, not turned into Infinity or a neighbouring number.
 */
import { Ajv, type ValidateFunction } from "ajv";
import type { FastifySchema, FastifySchemaCompiler } from "fastify";

/** Integers written as text: optional minus, at most 16 digits (2^53-1 has 16), then checked exactly. */
const INTEGER_TEXT = /^-?(0|[1-9][0-9]{0,15})$/;

const bodyAjv = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
const textAjv = new Ajv({ coerceTypes: true, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });

interface Issue { instancePath: string; keyword: string; message: string; params: Record<string, unknown> }

/** Every integer in a schema gets the bounds of exact integers unless it has tighter ones. */
function boundIntegers(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(boundIntegers);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) out[k] = boundIntegers(v);
  if (out.type === "integer") {
    out.minimum ??= Number.MIN_SAFE_INTEGER;
    out.maximum ??= Number.MAX_SAFE_INTEGER;
  }
  return out;
}

/** The names of a path's or query's integer properties, to be read from exact integer text only. */
function integerProperties(schema: unknown): string[] {
  const props = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  return Object.entries(props).filter(([, p]) => p.type === "integer").map(([k]) => k);
}

export const validatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) => {
  const bounded = boundIntegers(schema) as object;
  if (httpPart === "body") {
    const validate = bodyAjv.compile(bounded);
    return (data: unknown) => (validate(data) ? { value: data } : { error: schemaError(validate) });
  }
  const validate: ValidateFunction = textAjv.compile(bounded);
  const integers = integerProperties(schema);
  return (data: unknown) => {
    const record = (data ?? {}) as Record<string, unknown>;
    const inexact: Issue[] = integers
      .filter((k) => typeof record[k] === "string" && (!INTEGER_TEXT.test(record[k] as string) || !Number.isSafeInteger(Number(record[k]))))
      .map((k) => ({ instancePath: `/${k}`, keyword: "type", message: "must be an exact integer (digits only, within ±(2^53-1))", params: {} }));
    if (inexact.length > 0) return { error: withIssues(inexact) };
    return validate(data) ? { value: data } : { error: schemaError(validate) };
  };
};

function schemaError(validate: ValidateFunction): Error {
  return withIssues((validate.errors ?? []) as Issue[]);
}

/** An error fastify treats as a failed validation (the envelope names each issue). */
function withIssues(issues: Issue[]): Error {
  return Object.assign(new Error(issues.map((i) => `${i.instancePath} ${i.message}`).join(", ")), { validation: issues });
}

// How a protocol message is defined and checked: each message is ONE TypeBox definition, which gives both
// its TypeScript type (`Static<typeof X>`) and the JSON Schema ajv checks received messages against, so
// the type and the runtime check cannot drift apart. A set of messages is told apart by its `type` field;
// a message that fails gets one sentence naming the field (`jobs[0].seed must be an integer ≥ 0, got 1.5`).
//
// The protocol modules (training.ts, inference.ts, dashboard.ts, generation_output.ts) define their
// messages with `message()`; jsonl.ts frames them as JSON lines with the protocol version `v`. The webview
// bundles import protocol *types* only (eslint enforces it), so neither TypeBox nor ajv is bundled there.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Type, type Static, type TLiteral, type TObject, type TProperties, type TSchema, type TUnsafe, type ObjectOptions, type SchemaOptions } from '@sinclair/typebox';

export { Type, type Static };

/** Schema keyword for a field whose failure reads better as a sentence than as the generated one. */
const PROBLEM = 'problem';

/**
 * A message: `type` (a literal) plus its fields; fields not listed are refused (so a typo or a field of a
 * newer protocol is named, not silently dropped).
 */
export function message<const K extends string, P extends TProperties>(type: K, properties: P, options?: ObjectOptions): TObject<{ type: TLiteral<K> } & P> {
  return Type.Object({ type: Type.Literal(type), ...properties }, { additionalProperties: false, ...options });
}

/** A nested object of the protocol: unknown fields refused, like messages. */
export function record<P extends TProperties>(properties: P, options?: ObjectOptions): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

/** One of a few strings (a JSON Schema `enum`, so a wrong value is reported with the allowed ones). */
export function oneOf<const V extends readonly string[]>(values: V, options?: SchemaOptions): TUnsafe<V[number]> {
  return Type.Unsafe<V[number]>({ type: 'string', enum: [...values], ...options });
}

/** Schema options: `problem` replaces the generated sentence after the field's name when the field fails. */
export function saying(problem: string, options: SchemaOptions = {}): SchemaOptions {
  return { ...options, [PROBLEM]: problem };
}

/** The type of the messages a set holds (the union of its definitions' types). */
export type MessageOf<M> = M extends Messages<infer S> ? Static<S> : never;

export type Checked<T> = { ok: true; message: T } | { ok: false; problem: string; id?: string };

type MessageType<S extends TObject> = S['properties']['type'] extends TLiteral<infer K> ? K : never;

/** The messages one side may receive, told apart by `type`. */
export class Messages<S extends TObject> {
  /** The `type` values, in definition order. */
  readonly types: readonly MessageType<S>[];
  private readonly byType: Map<string, S>;
  private compiled: Map<string, ValidateFunction> | undefined;

  /** `noun` names a message in problems: "request", "trainer event". */
  constructor(
    readonly noun: string,
    schemas: readonly S[],
  ) {
    this.byType = new Map(schemas.map((s) => [(s.properties.type as TLiteral<string>).const as string, s]));
    this.types = [...this.byType.keys()] as MessageType<S>[];
  }

  /** The JSON Schema of one message type (for docs and tests). */
  schema(type: MessageType<S>): S {
    return this.byType.get(type as string)!;
  }

  /** A received value → the message, or one sentence saying what is wrong (naming the field). */
  check(value: unknown): Checked<Static<S>> {
    if (!value || typeof value !== 'object' || Array.isArray(value)) return { ok: false, problem: `${this.noun} must be a JSON object` };
    const o = value as Record<string, unknown>;
    const id = typeof o.id === 'string' ? o.id : undefined;
    const validate = this.validators().get(o.type as string);
    if (!validate) {
      const list = this.types.length > 1 ? `${this.types.slice(0, -1).join(', ')} or ${this.types.at(-1)}` : this.types[0];
      return { ok: false, id, problem: `unknown ${this.noun} type ${JSON.stringify(o.type)} (expected ${list})` };
    }
    const what = `${o.type} ${this.noun}`;
    if (validate(o)) return { ok: true, message: o as Static<S> };
    return { ok: false, id, problem: describe(validate.errors![0], what) };
  }

  private validators(): Map<string, ValidateFunction> {
    // Compiled on first use (well under a millisecond per message type).
    if (!this.compiled) {
      const ajv = new Ajv({ strict: true, verbose: true, keywords: [PROBLEM] });
      this.compiled = new Map([...this.byType].map(([type, s]) => [type, ajv.compile(s)]));
    }
    return this.compiled;
  }
}

export function messages<S extends TObject>(noun: string, schemas: readonly S[]): Messages<S> {
  return new Messages(noun, schemas);
}

/** `/jobs/0/seed` → `jobs[0].seed`; a top-level field is quoted: `"steps"`. */
function fieldName(segments: string[]): string {
  if (segments.length === 1) return JSON.stringify(segments[0]);
  return segments.map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

/** What a schema asks for, as the end of a sentence: "must be an integer ≥ 1". */
function expected(s: TSchema): string {
  if (s.const !== undefined) return `must be ${JSON.stringify(s.const)}`;
  if (s.enum) return `must be one of ${(s.enum as unknown[]).join(', ')}`;
  switch (s.type) {
    case 'integer':
      return `must be an integer${s.minimum !== undefined ? ` ≥ ${s.minimum}` : ''}`;
    case 'number':
      return `must be a number${s.minimum !== undefined ? ` ≥ ${s.minimum}` : ''}`;
    case 'string':
      return s.minLength ? 'must be a non-empty string' : 'must be a string';
    case 'boolean':
      return 'must be true or false';
    case 'array':
      return s.minItems ? 'must be a non-empty list' : 'must be a list';
    case 'object':
      return 'must be an object';
    default:
      return 'has the wrong type';
  }
}

function describe(err: ErrorObject, what: string): string {
  const segments = err.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (err.keyword === 'required' || err.keyword === 'additionalProperties') {
    const key = err.keyword === 'required' ? (err.params as { missingProperty: string }).missingProperty : (err.params as { additionalProperty: string }).additionalProperty;
    const field = fieldName([...segments, key]);
    if (err.keyword === 'additionalProperties') return `${field} is not a field of the ${what}`;
    const s = (err.parentSchema as TObject).properties[key];
    return s[PROBLEM] ? `${field} ${s[PROBLEM]}` : `${field} is missing (it ${expected(s)})`;
  }
  const s = err.parentSchema as TSchema;
  const field = segments.length ? fieldName(segments) : `the ${what}`;
  return s[PROBLEM] ? `${field} ${s[PROBLEM]}` : `${field} ${expected(s)}, got ${JSON.stringify(err.data)}`;
}

// A runtime check of trainer events against the types in src/protocol/training.ts: every required field
// present with its type, no field of the wrong type, known enums. Kept by hand beside the types; a test
// that emits an event of each type through the real trainer fails when the two drift apart.
import { PROTOCOL_VERSION } from '../../src/protocol/training.js';

type Kind = 'string' | 'number' | 'string[]' | 'object';
type Shape = Record<string, { kind: Kind; optional?: boolean; oneOf?: readonly string[] }>;

const ERROR_CODES = ['config', 'model', 'dataset', 'nan_loss', 'out_of_memory', 'backend', 'io', 'internal'] as const;
const req = (kind: Kind, oneOf?: readonly string[]) => ({ kind, oneOf });
const opt = (kind: Kind) => ({ kind, optional: true });

const SHAPES: Record<string, Shape> = {
  started: {
    runId: req('string'), configPath: opt('string'), outputDir: req('string'), backend: req('string'), adapter: opt('string'), totalSteps: req('number'),
    startStep: req('number'), numExamples: req('number'), batchSize: req('number'), gradientAccumulationSteps: req('number'), loraParameters: req('number'), time: req('string'),
  },
  progress: {
    step: req('number'), totalSteps: req('number'), epoch: req('number'), loss: req('number'), lr: req('number'), gradNorm: opt('number'),
    samplesPerSecond: req('number'), etaSeconds: req('number'), elapsedSeconds: req('number'),
  },
  sample: { step: req('number'), prompt: req('string'), seed: req('number'), path: req('string') },
  checkpoint: { step: req('number'), path: req('string'), removed: req('string[]') },
  warning: { message: req('string'), code: opt('string') },
  error: { code: req('string', ERROR_CODES), message: req('string'), hint: opt('string') },
  finished: { reason: req('string', ['completed', 'stopped']), step: req('number'), outputs: req('object'), elapsedSeconds: req('number') },
};
const OUTPUTS: Shape = { lora: opt('string'), kohya: opt('string'), checkpoint: opt('string'), metrics: req('string'), samples: req('string[]') };

function check(o: Record<string, unknown>, shape: Shape, where: string): string[] {
  const problems: string[] = [];
  for (const [k, s] of Object.entries(shape)) {
    const v = o[k];
    if (v === undefined) {
      if (!s.optional) problems.push(`${where}.${k} missing`);
      continue;
    }
    const ok =
      s.kind === 'string[]' ? Array.isArray(v) && v.every((x) => typeof x === 'string')
      : s.kind === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v)
      : s.kind === 'number' ? typeof v === 'number' && Number.isFinite(v)
      : typeof v === s.kind;
    if (!ok) problems.push(`${where}.${k} is not a ${s.kind}: ${JSON.stringify(v)}`);
    else if (s.oneOf && !s.oneOf.includes(v as string)) problems.push(`${where}.${k} = ${JSON.stringify(v)} is not one of ${s.oneOf.join(', ')}`);
  }
  for (const k of Object.keys(o)) if (!(k in shape) && k !== 'type' && k !== 'v') problems.push(`${where}.${k} is not in the protocol`);
  return problems;
}

/** Problems with one event (empty when it is a valid protocol event). */
export function validateEvent(e: unknown): string[] {
  if (typeof e !== 'object' || e === null) return ['not an object'];
  const o = e as Record<string, unknown>;
  if (o.v !== PROTOCOL_VERSION) return [`v is ${JSON.stringify(o.v)}, expected ${PROTOCOL_VERSION}`];
  const shape = SHAPES[o.type as string];
  if (!shape) return [`unknown type ${JSON.stringify(o.type)}`];
  const problems = check(o, shape, String(o.type));
  if (o.type === 'finished' && typeof o.outputs === 'object' && o.outputs) problems.push(...check(o.outputs as Record<string, unknown>, OUTPUTS, 'finished.outputs'));
  return problems;
}

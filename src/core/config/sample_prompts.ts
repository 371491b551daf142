// Sample prompts (the run config's `sample_prompts`): each entry is one line of kohya's sample-prompt
// syntax (sd-scripts' line_to_prompt_dict): the prompt, then options each introduced by " --":
//   --n negative prompt   --d seed   --s steps   --l guidance scale   --w width   --h height   --ss sampler
// e.g. `a red circle on grey --n blurry --d 42 --s 20 --l 7.5 --ss euler`. kohya's sampler names that
// mean one of ours are accepted (k_euler → euler, dpmsolver++ → dpmpp-2m). Light: no tensors.
import { INFERENCE_SCHEDULERS, type InferenceScheduler } from './generation.js';

export interface SamplePrompt {
  readonly prompt: string;
  readonly negativePrompt?: string;
  readonly seed?: number;
  readonly steps?: number;
  readonly guidanceScale?: number;
  readonly width?: number;
  readonly height?: number;
  readonly sampler?: InferenceScheduler;
}

/** kohya's sampler names (sd-scripts' SCHEDULER names) that are one of ours. */
const KOHYA_SAMPLERS: Readonly<Record<string, InferenceScheduler>> = {
  ddim: 'ddim',
  pndm: 'pndm',
  euler: 'euler',
  k_euler: 'euler',
  'dpmsolver++': 'dpmpp-2m',
  'dpm++_2m': 'dpmpp-2m',
};

/** A sampler as a user may spell it (ours or kohya's), or undefined. */
export function samplerByName(name: string): InferenceScheduler | undefined {
  const n = name.trim().toLowerCase();
  return (INFERENCE_SCHEDULERS as readonly string[]).includes(n) ? (n as InferenceScheduler) : KOHYA_SAMPLERS[n];
}

export class SamplePromptError extends Error {}

/** One kohya prompt line → its fields; throws SamplePromptError naming the option that is wrong. */
export function parseSamplePrompt(line: string): SamplePrompt {
  const [prompt, ...options] = line.split(' --');
  const p: { -readonly [K in keyof SamplePrompt]: SamplePrompt[K] } = { prompt: prompt.trim() };
  if (!p.prompt) throw new SamplePromptError(`"${line}" has no prompt before its options`);
  const int = (v: string, what: string, min: number) => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new SamplePromptError(`${what} must be an integer ≥ ${min}, got "${v}"`);
    return Number(v);
  };
  for (const opt of options) {
    const m = /^(\w+)(?:\s+([\s\S]*))?$/.exec(opt.trim());
    const flag = m?.[1].toLowerCase() ?? '';
    const value = (m?.[2] ?? '').trim();
    if (!value) throw new SamplePromptError(`--${flag || opt.trim()} needs a value`);
    switch (flag) {
      case 'n':
        p.negativePrompt = value;
        break;
      case 'd':
        p.seed = int(value, '--d (seed)', 0);
        break;
      case 's':
        // kohya clamps to 1..1000.
        p.steps = Math.min(1000, int(value, '--s (steps)', 1));
        break;
      case 'l':
      case 'g':
        if (!/^\d+(\.\d*)?$|^\.\d+$/.test(value)) throw new SamplePromptError(`--${flag} (guidance scale) must be a number, got "${value}"`);
        p.guidanceScale = Number(value);
        break;
      case 'w':
        p.width = int(value, '--w (width)', 8);
        break;
      case 'h':
        p.height = int(value, '--h (height)', 8);
        break;
      case 'ss': {
        const s = samplerByName(value);
        if (!s) throw new SamplePromptError(`--ss "${value}" is not a sampler LoRA Studio has (${INFERENCE_SCHEDULERS.join(', ')})`);
        p.sampler = s;
        break;
      }
      default:
        throw new SamplePromptError(`--${flag} is not a sample-prompt option (--n negative prompt, --d seed, --s steps, --l guidance, --w width, --h height, --ss sampler)`);
    }
  }
  return p;
}

/** Every prompt of a run config's sample_prompts, or an error naming the entry. */
export function parseSamplePrompts(lines: readonly string[]): SamplePrompt[] {
  return lines.map((line, i) => {
    try {
      return parseSamplePrompt(line);
    } catch (e) {
      if (e instanceof SamplePromptError) throw new SamplePromptError(`sample_prompts[${i}]: ${e.message}`);
      throw e;
    }
  });
}

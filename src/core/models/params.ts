// A model component's parameters, by their diffusers/transformers names, as tfjs tensors.
// Conv weights arrive OIHW and are transposed once to HWIO here; everything becomes float32.
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile } from '../io/safetensors.js';

export class Params {
  private readonly used = new Set<string>();

  constructor(
    readonly tensors: Map<string, tf.Tensor>,
    /** Where they came from, for error messages. */
    readonly source: string,
  ) {}

  /** Loads every tensor of the given safetensors files (shards of one component); `prefix` is stripped from the names that carry it. */
  static load(files: readonly string[], prefix = ''): Params {
    const tensors = new Map<string, tf.Tensor>();
    for (const file of files) {
      const f = SafetensorsFile.open(file);
      try {
        for (const [name, info] of f.tensors) {
          const data = f.readFloat32(name);
          const shape = [...info.shape];
          const t = tf.tensor(data, shape, 'float32');
          // OIHW → HWIO, once, so every conv runs in tfjs' native layout.
          tensors.set(prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name, shape.length === 4 ? tf.tidy(() => t.transpose([2, 3, 1, 0])) : t);
          if (shape.length === 4) t.dispose();
        }
      } finally {
        f.close();
      }
    }
    return new Params(tensors, files.join(', '));
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.source}: missing parameter "${name}" — the weights do not match the architecture in config.json`);
    this.used.add(name);
    return t as tf.Tensor<R>;
  }

  /** Names present in the file but never read by the model (CheckedParams refuses a model that leaves any). */
  unused(): string[] {
    return [...this.tensors.keys()].filter((k) => !this.used.has(k));
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}

// `lora-studio convert` and `inspect`'s per-tool verdict. A converted file must mean what the original meant:
// every module's update (alpha / rank) · up · down is compared, exactly where only the layout changes (alpha
// stored or folded by a power of two) and within half-precision rounding for --precision fp16.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../../src/core/io/safetensors.js';
import { describeSafetensors, formatDescription } from '../../src/core/io/inspect.js';
import { ldmUnetPaths, loraTargetsFromUnetWeights, kohyaName } from '../../src/core/lora/formats.js';
import { unetLora, writeLoraFile } from '../../src/core/lora/lora_writer.js';
import { UNet2DConditionModel } from '../../src/core/models/unet_2d_condition.js';
import { readLoraFile, LoraFileError, type LoraModule } from '../../src/core/lora/lora_file.js';
import { convertLoraFile, modelLoraLayout } from '../../src/core/lora/convert.js';
import { toolSupport } from '../../src/core/lora/tool_support.js';
import { runConvertCommand } from '../../src/cli/convert.js';
import { FIXTURES, MODEL_DIR } from '../helpers/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-convert-'));
const KOHYA = path.join(FIXTURES, 'lora_kohya.safetensors');
const DIFFUSERS = path.join(FIXTURES, 'lora_diffusers/pytorch_lora_weights.safetensors');
const unetFiles = fs.readdirSync(path.join(MODEL_DIR, 'unet')).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(MODEL_DIR, 'unet', f));
const TARGETS = loraTargetsFromUnetWeights(unetFiles);

class KeysOf {
  readonly keys: string[];
  constructor(file: string) {
    const f = SafetensorsFile.open(file);
    this.keys = f.names();
    f.close();
  }
}

/** (alpha / rank) · up, the factor that, with down, makes the module's update. */
const scaledUp = (m: LoraModule) => m.up.map((v) => (v * m.alpha) / m.rank);

function sameUpdates(a: Map<string, LoraModule>, b: Map<string, LoraModule>, tol: number, label: string, abs = 0) {
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), label);
  for (const [p, m] of a) {
    const n = b.get(p)!;
    const [ua, ub] = [scaledUp(m), scaledUp(n)];
    for (let i = 0; i < ua.length; i++) assert.ok(Math.abs(ua[i] - ub[i]) <= tol * Math.abs(ua[i]) + abs, `${label} ${p} up[${i}] ${ub[i]} vs ${ua[i]}`);
    for (let i = 0; i < m.down.length; i++) assert.ok(Math.abs(m.down[i] - n.down[i]) <= tol * Math.abs(m.down[i]) + abs, `${label} ${p} down[${i}]`);
  }
}

test('kohya (alpha = rank/2) → diffusers, PEFT, kohya: the same updates; diffusers folds alpha, PEFT keeps it in the header', () => {
  const original = readLoraFile(KOHYA, TARGETS);
  for (const to of ['diffusers', 'peft', 'kohya'] as const) {
    const out = path.join(tmp, `from-kohya-${to}.safetensors`);
    const r = convertLoraFile(KOHYA, out, to);
    assert.equal(r.modules, original.modules.size);
    const back = readLoraFile(out, TARGETS);
    assert.equal(back.format, to);
    // Exact: alpha / rank = 0.5 is a power of two, so folding it into up loses nothing.
    sameUpdates(original.modules, back.modules, 0, `kohya → ${to}`);
    const f = SafetensorsFile.open(out);
    if (to === 'diffusers') assert.equal(f.metadata.ss_network_module, undefined, 'a diffusers file never claims networks.lora');
    if (to === 'kohya') assert.equal(f.metadata.ss_network_module, 'networks.lora');
    if (to === 'peft') assert.equal(JSON.parse(f.metadata.lora_adapter_metadata)['unet.lora_alpha'], original.modules.values().next().value!.alpha);
    f.close();
  }
});

test('diffusers → kohya --precision fp16 (the command): every tensor F16, half the bytes, updates within fp16 rounding; the verdicts flip', async () => {
  const out = path.join(tmp, 'from-diffusers-fp16.safetensors');
  const saved = console.log;
  console.log = () => {};
  try {
    assert.equal(await runConvertCommand([DIFFUSERS, out, '--to', 'kohya', '--precision', 'fp16']), 0);
  } finally {
    console.log = saved;
  }
  const f = SafetensorsFile.open(out);
  const g = SafetensorsFile.open(DIFFUSERS);
  assert.ok(f.names().every((k) => f.info(k).dtype === 'F16'));
  const bytes = (x: SafetensorsFile, keys: string[]) => keys.reduce((s, k) => s + x.info(k).byteLength, 0);
  assert.equal(bytes(f, f.names().filter((k) => !k.endsWith('.alpha'))), bytes(g, g.names()) / 2);
  f.close();
  g.close();
  // fp16 rounds to nearest: at most 2^-11 relative for normal values, half the subnormal spacing (2^-25) below 2^-14.
  sameUpdates(readLoraFile(DIFFUSERS, TARGETS).modules, readLoraFile(out, TARGETS).modules, 2 ** -11, 'diffusers → kohya fp16', 2 ** -25);
  const before = new Map(toolSupport(new KeysOf(DIFFUSERS).keys).map((t) => [t.tool, t.loads]));
  const after = new Map(toolSupport(new KeysOf(out).keys).map((t) => [t.tool, t.loads]));
  assert.deepEqual([...before], [['diffusers', true], ['ComfyUI', false], ['A1111', false], ['sd-scripts', false]]);
  assert.deepEqual([...after], [['diffusers', true], ['ComfyUI', true], ['A1111', true], ['sd-scripts', true]]);
});

test('convert: an SGM-named kohya file converts to kohya but not to diffusers names (which need the model), with the fix named', async () => {
  const p = 'input_blocks_4_1_transformer_blocks_0_attn1_to_q';
  const file = path.join(tmp, 'sgm.safetensors');
  writeSafetensors(file, new Map([
    [`lora_unet_${p}.lora_down.weight`, { shape: [2, 8], data: new Float32Array(16).fill(0.5) }],
    [`lora_unet_${p}.lora_up.weight`, { shape: [8, 2], data: new Float32Array(16).fill(0.25) }],
    [`lora_unet_${p}.alpha`, { shape: [], data: [1] }],
  ]));
  assert.throws(() => convertLoraFile(file, path.join(tmp, 'sgm-d.safetensors'), 'diffusers'), (e: unknown) => e instanceof LoraFileError && /SGM\/LDM blocks .*input_blocks\.4\.1.*--to kohya/.test(e.message));
  convertLoraFile(file, path.join(tmp, 'sgm-k.safetensors'), 'kohya');
  const f = SafetensorsFile.open(path.join(tmp, 'sgm-k.safetensors'));
  assert.deepEqual(f.names().sort(), [`lora_unet_${p}.alpha`, `lora_unet_${p}.lora_down.weight`, `lora_unet_${p}.lora_up.weight`]);
  f.close();
  // The command line: bad arguments exit 2 and name the problem.
  const errors: string[] = [];
  const saved = console.error;
  console.error = (m: string) => errors.push(m);
  try {
    assert.equal(await runConvertCommand([file, path.join(tmp, 'x.safetensors'), '--to', 'a1111']), 2);
    assert.equal(await runConvertCommand([file, '--to', 'kohya']), 2);
    assert.equal(await runConvertCommand([file, path.join(tmp, 'x.safetensors'), '--to', 'kohya', '--precision', 'fp8']), 2);
  } finally {
    console.error = saved;
  }
  assert.match(errors[0], /--to must be diffusers, kohya, peft; got "a1111"/);
  assert.match(errors[1], /expected an input and an output file, got 1/);
  assert.match(errors[2], /--precision must be fp32, fp16, bf16; got "fp8"/);
});

test("inspect: which tools load a file, and why not, key by key", () => {
  // The diffusers fixture (what diffusers' save_lora_weights writes): only diffusers.
  const d = describeSafetensors(DIFFUSERS);
  const n = d.tensors;
  const byTool = new Map(d.lora!.tools.map((t) => [t.tool, t]));
  assert.equal(byTool.get('diffusers')!.loads, true);
  for (const tool of ['ComfyUI', 'A1111', 'sd-scripts'] as const) assert.equal(byTool.get(tool)!.rejected, n, `${tool} uses none of the diffusers keys`);
  const text = formatDescription(d);
  assert.match(text, /loads in: diffusers\n/);
  assert.match(text, new RegExp(`not in ComfyUI: ${n} of ${n} keys unused\\n    ${n}× diffusers attention-projection keys .*processor\\.to_q.*model_lora_keys_unet\\) \\(e\\.g\\. unet\\.`));
  assert.match(text, /not in A1111: .*\n    \d+× networks\.py takes the name before the first "\." \("unet"\)/);
  // The kohya fixture: all four.
  const k = describeSafetensors(KOHYA);
  assert.deepEqual(k.lora!.tools.filter((t) => t.loads).map((t) => t.tool), ['diffusers', 'ComfyUI', 'A1111', 'sd-scripts']);
  assert.match(formatDescription(k), /loads in: diffusers, ComfyUI, A1111, sd-scripts\n/);
  // Key by key: a DoRA part is used by ComfyUI and A1111 but not by sd-scripts' networks.lora; a LoHa part by none here.
  const name = kohyaName('mid_block.attentions.0.transformer_blocks.0.attn1.to_q');
  const v = new Map(toolSupport([`${name}.lora_down.weight`, `${name}.lora_up.weight`, `${name}.dora_scale`]).map((t) => [t.tool, t]));
  assert.deepEqual([v.get('ComfyUI')!.loads, v.get('A1111')!.loads, v.get('sd-scripts')!.loads], [true, true, false]);
  assert.match(v.get('sd-scripts')!.reasons[0].reason, /no DoRA/);
  assert.equal(toolSupport([`${name}.hada_w1_a`]).find((t) => t.tool === 'diffusers')!.loads, false);
});

test('an SDXL kohya file with SGM names reads against the UNet header targets alone (attention projections only)', () => {
  // sd-scripts names SDXL modules the SGM way; the layout (layers per block) is then inferred from the
  // attention paths, and must give the same SGM names as the full module list does.
  const dir = path.join(FIXTURES, '..', 'tiny-sdxl', 'model', 'unet');
  const targets = loraTargetsFromUnetWeights([path.join(dir, 'diffusion_pytorch_model.safetensors')]);
  const unet = UNet2DConditionModel.fromPretrained(dir);
  const sgm = ldmUnetPaths(unet.loraLayers().map((l) => l.path));
  unet.dispose();
  assert.deepEqual([...ldmUnetPaths(targets.map((t) => t.path))], targets.map((t) => [t.path, sgm.get(t.path)]));
  const modules = new Map(targets.map((t) => [t.path, { down: new Float32Array(2 * t.inFeatures).fill(0.5), up: new Float32Array(t.outFeatures * 2).fill(0.25), rank: 2, inFeatures: t.inFeatures, outFeatures: t.outFeatures, alpha: 1 }]));
  const file = path.join(tmp, 'sdxl-sgm.safetensors');
  writeLoraFile(file, 'kohya', unetLora(modules, sgm));
  const back = readLoraFile(file, targets);
  assert.deepEqual([...back.modules.keys()].sort(), targets.map((t) => t.path).sort());
  assert.ok([...back.modules.values()].every((m) => m.alpha === 1 && m.rank === 2));
});

test('SDXL kohya (SGM names) → diffusers → kohya and → PEFT → kohya with --model: byte-identical tensors on tiny-sdxl', async () => {
  const model = path.join(FIXTURES, '..', 'tiny-sdxl', 'model');
  // The layout from the UNet config alone is the model's own list of LoRA layers.
  const layout = modelLoraLayout(model);
  const unet = UNet2DConditionModel.fromPretrained(path.join(model, 'unet'));
  const layers = unet.loraLayers();
  unet.dispose();
  assert.equal(layout.sdxl, true);
  assert.deepEqual(
    layout.unet.map((t) => [t.path, t.inFeatures, t.outFeatures, t.kernelSize ?? 1]),
    layers.map((l) => [l.path, l.inFeatures, l.outFeatures, l.kernelSize]),
  );
  // A LoCon-like file as sd-scripts (and the trainer) write it for SDXL: SGM UNet names, lora_te1_/lora_te2_;
  // attention, a 3×3 conv, a 1×1 shortcut and a time embedding; ranks 2 and 4 mixed. Alpha = rank, because a
  // diffusers file folds alpha into up (so a kohya file made from it has alpha = rank); the PEFT trip keeps
  // alpha ≠ rank and comes back byte for byte too.
  const pick = layout.unet.filter((t) => /attn1\.to_(q|out\.0)$|resnets\.0\.conv1$|conv_shortcut$|time_emb_proj$/.test(t.path));
  assert.ok(pick.some((t) => t.kernelSize === 3) && pick.some((t) => t.path.endsWith('conv_shortcut')), 'the pick covers 3×3 and 1×1 convs');
  const random = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed * 7919 + i * 104729) / 3));
  const unetModules = (alphaOf: (rank: number) => number) =>
    new Map(
      pick.map((t, i) => {
        const rank = i % 2 ? 2 : 4;
        const k = t.kernelSize ?? 1;
        return [t.path, { down: random(rank * t.inFeatures * k * k, i), up: random(t.outFeatures * rank, i + 100), rank, alpha: alphaOf(rank), inFeatures: t.inFeatures, outFeatures: t.outFeatures, ...(k > 1 ? { kernelSize: k } : {}), ...(t.conv ? { conv: true } : {}) }];
      }),
    );
  const te = (inF: number, seed: number) => new Map([['encoder.layers.0.self_attn.q_proj', { down: random(2 * inF, seed), up: random(inF * 2, seed + 1), rank: 2, alpha: 2, inFeatures: inF, outFeatures: inF }]]);
  const teWidth = (dir: string) => (JSON.parse(fs.readFileSync(path.join(model, dir, 'config.json'), 'utf8')) as { hidden_size: number }).hidden_size;
  const sgm = ldmUnetPaths(layout.unet.map((t) => t.path));
  const write = (file: string, alphaOf: (rank: number) => number) =>
    writeLoraFile(file, 'kohya', { components: new Map([['unet', unetModules(alphaOf)], ['text_encoder', te(teWidth('text_encoder'), 1)], ['text_encoder_2', te(teWidth('text_encoder_2'), 2)]]), unetSgmNames: sgm });
  const original = path.join(tmp, 'sdxl-kohya.safetensors');
  const halfAlpha = path.join(tmp, 'sdxl-kohya-half-alpha.safetensors');
  write(original, (r) => r);
  write(halfAlpha, (r) => r / 2);
  assert.ok(new KeysOf(original).keys.some((k) => k.startsWith('lora_unet_input_blocks_')) && new KeysOf(original).keys.some((k) => k.startsWith('lora_te2_')), 'SGM and lora_te2_ names');

  const quiet = async (args: string[]) => {
    const saved = console.log;
    console.log = () => {};
    try {
      return await runConvertCommand(args);
    } finally {
      console.log = saved;
    }
  };
  const sameTensors = (a: string, b: string, label: string) => {
    const x = SafetensorsFile.open(a);
    const y = SafetensorsFile.open(b);
    assert.deepEqual(y.names().sort(), x.names().sort(), label);
    for (const name of x.names()) {
      assert.equal(y.info(name).dtype, x.info(name).dtype, `${label} ${name}`);
      assert.deepEqual(y.info(name).shape, x.info(name).shape, `${label} ${name}`);
      assert.deepEqual(new Uint32Array(y.readFloat32(name).buffer), new Uint32Array(x.readFloat32(name).buffer), `${label} ${name}`);
    }
    x.close();
    y.close();
  };
  for (const [input, via] of [[original, 'diffusers'], [original, 'peft'], [halfAlpha, 'peft']] as const) {
    const mid = path.join(tmp, `sdxl-${path.basename(input, '.safetensors')}-${via}.safetensors`);
    const back = path.join(tmp, `sdxl-${path.basename(input, '.safetensors')}-${via}-kohya.safetensors`);
    assert.equal(await quiet([input, mid, '--to', via, '--model', model]), 0);
    const midKeys = new KeysOf(mid).keys;
    assert.ok(midKeys.some((k) => k.startsWith('unet.down_blocks.')) && !midKeys.some((k) => /input_blocks|output_blocks|middle_block/.test(k)), `${via}: diffusers module names`);
    assert.equal(await quiet([mid, back, '--to', 'kohya', '--model', model]), 0);
    sameTensors(input, back, `kohya → ${via} → kohya`);
  }

  // The model may be named by a run config (its pretrained_model_name_or_path, relative to it).
  const config = path.join(tmp, 'sdxl.lora.yaml');
  fs.writeFileSync(config, `pretrained_model_name_or_path: ${model}\ntrain_data_dir: ./data\n`);
  const viaConfig = path.join(tmp, 'sdxl-via-config.safetensors');
  assert.equal(await quiet([original, viaConfig, '--to', 'diffusers', '--model', config]), 0);
  sameTensors(path.join(tmp, 'sdxl-sdxl-kohya-diffusers.safetensors'), viaConfig, '--model RUN.lora.yaml');
  // Without --model the diffusers names cannot be made, and the message says how; with another model's
  // layout a key that does not fit is named.
  assert.throws(() => convertLoraFile(original, path.join(tmp, 'x.safetensors'), 'diffusers'), /input_blocks.*Name the model it is for with --model/);
  assert.throws(() => convertLoraFile(original, path.join(tmp, 'x.safetensors'), 'diffusers', 'fp32', modelLoraLayout(MODEL_DIR)), /key "lora_unet_(input|output|middle)_blocks?_[a-z0-9_.]+" is for UNet module .* which this model does not have/);
});

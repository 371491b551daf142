// The notebook renderer for generation outputs (application/vnd.lora-studio.generation+json): a grid with
// the seed and parameters under each image; compare (same seed without and with the LoRAs, side by side);
// a LoRA-scale sweep (a row per scale) with a slider that asks the extension for an image at a new scale.
// Each image can be copied into a new cell as settings, or saved. Images of a reopened notebook are files
// the renderer cannot read: it asks the extension for them. Without messaging (a diff view, a trustless
// host) it still draws everything it has.
import type { ExtensionToRenderer, GenerationOutput, OutputImage, RendererToExtension } from '../../src/protocol/generation_output.js';
import type { ActivationFunction, RendererContext } from './renderer_api.js';

interface Env {
  post?: (m: RendererToExtension) => void;
  /** Handlers of replies, by request id. */
  waiting: Map<string, (m: ExtensionToRenderer) => void>;
  newId: () => string;
}

export const activate: ActivationFunction = (ctx: RendererContext) => {
  const waiting = new Map<string, (m: ExtensionToRenderer) => void>();
  ctx.onDidReceiveMessage?.((m) => {
    const msg = m as ExtensionToRenderer;
    if (msg && typeof msg === 'object' && 'requestId' in msg) waiting.get(msg.requestId)?.(msg);
  });
  let next = 0;
  const env: Env = {
    post: ctx.postMessage ? (m) => ctx.postMessage!(m) : undefined,
    waiting,
    newId: () => `r${++next}-${Math.random().toString(36).slice(2, 8)}`,
  };
  return {
    renderOutputItem(item, element) {
      let output: GenerationOutput;
      try {
        output = item.json() as GenerationOutput;
      } catch {
        element.textContent = 'LoRA Studio: this output is not readable JSON.';
        return;
      }
      element.replaceChildren(style(), renderOutput(output, env));
    },
  };
};

/** A grid size from an output (which a notebook file may hold anything in): an integer 1–64, never text for the style. */
function count(v: unknown): number {
  const n = Math.floor(Number(v));
  return Number.isFinite(n) ? Math.min(64, Math.max(1, n)) : 1;
}

function renderOutput(o: GenerationOutput, env: Env): HTMLElement {
  const root = h('div', { class: `lsg lsg-${o.layout}`, 'data-layout': o.layout, 'data-run': o.runId });
  root.append(header(o));
  const images = o.images.map((im, index) => ({ im, index }));
  if (o.layout === 'grid') {
    const grid = h('div', { class: 'lsg-grid', style: `grid-template-columns: repeat(${count(o.columns)}, max-content)` });
    for (const { im, index } of images) grid.append(figure(o, im, index, env, `seed ${im.seed}`));
    root.append(grid);
  } else if (o.layout === 'compare') {
    const table = h('div', { class: 'lsg-grid lsg-compare-grid', style: 'grid-template-columns: repeat(2, max-content)' });
    table.append(h('div', { class: 'lsg-colhead' }, 'without LoRA'), h('div', { class: 'lsg-colhead' }, `with ${loraSummary(o.settings.loras)}`));
    for (let row = 0; row < count(o.rows); row++) {
      for (const column of [0, 1]) {
        const found = images.find(({ im }) => im.row === row && im.column === column);
        table.append(found ? figure(o, found.im, found.index, env, `seed ${found.im.seed}`) : placeholder(o, 'not made'));
      }
    }
    root.append(table);
  } else {
    root.append(sweep(o, images, env));
  }
  if (o.status === 'cancelled') root.append(h('div', { class: 'lsg-note' }, `cancelled after ${o.images.length} of ${o.planned} images`));
  if (o.status === 'failed' && o.error) root.append(h('div', { class: 'lsg-error' }, o.error));
  if (o.status === 'running' && o.images.length < o.planned) root.append(h('div', { class: 'lsg-note' }, `${o.images.length} of ${o.planned} images…`));
  loadMissing(o, root, env);
  return root;
}

function header(o: GenerationOutput): HTMLElement {
  const s = o.settings;
  const parts = [
    s.model.split(/[\\/]/).filter(Boolean).slice(-1)[0] ?? s.model,
    s.scheduler,
    `${s.steps} steps`,
    `guidance ${s.guidance}`,
    s.width && s.height ? `${s.width}×${s.height}` : '',
    s.loras.length ? loraSummary(s.loras) : 'no LoRA',
    `${o.images.length} image${o.images.length === 1 ? '' : 's'} in ${o.seconds.toFixed(1)} s`,
  ].filter(Boolean);
  return h(
    'div',
    { class: 'lsg-head' },
    h('div', { class: 'lsg-prompt', title: 'prompt' }, s.prompt || '(empty prompt)'),
    s.negativePrompt ? h('div', { class: 'lsg-neg', title: 'negative prompt' }, `not: ${s.negativePrompt}`) : '',
    h('div', { class: 'lsg-params' }, parts.join(' · ')),
  );
}

function sweep(o: GenerationOutput, images: { im: OutputImage; index: number }[], env: Env): HTMLElement {
  const box = h('div', { class: 'lsg-sweep' });
  const table = h('div', { class: 'lsg-grid', style: `grid-template-columns: max-content repeat(${count(o.columns)}, max-content)` });
  const scales = o.sweep?.scales ?? [];
  for (let row = 0; row < count(o.rows); row++) {
    table.append(h('div', { class: 'lsg-rowhead' }, `scale ${scales[row] ?? '?'}`));
    for (let column = 0; column < count(o.columns); column++) {
      const found = images.find(({ im }) => im.row === row && im.column === column);
      table.append(found ? figure(o, found.im, found.index, env, `seed ${found.im.seed}`) : placeholder(o, 'not made'));
    }
  }
  box.append(table);
  if (!o.sweep || !env.post || o.images.length === 0) return box;

  // The slider: on release, ask the extension for the first seed at the chosen scale.
  const lo = Math.min(0, ...scales);
  const hi = Math.max(1, ...scales);
  const seed = o.images[0].seed;
  const slider = h('input', { type: 'range', class: 'lsg-slider', min: String(lo), max: String(hi), step: '0.05', value: String(scales[scales.length - 1] ?? 1), 'aria-label': 'LoRA scale' }) as HTMLInputElement;
  const value = h('span', { class: 'lsg-slider-value' }, Number(slider.value).toFixed(2));
  const live = h('div', { class: 'lsg-live', 'data-state': 'idle' });
  let current: string | undefined;
  slider.addEventListener('input', () => (value.textContent = Number(slider.value).toFixed(2)));
  slider.addEventListener('change', () => {
    const scale = Math.round(Number(slider.value) * 1000) / 1000;
    if (current) env.waiting.delete(current);
    const requestId = env.newId();
    current = requestId;
    const status = h('div', { class: 'lsg-caption' }, `scale ${scale} · seed ${seed} · starting…`);
    live.dataset.state = 'running';
    live.replaceChildren(h('div', { class: 'lsg-rowhead' }, `scale ${scale}`), placeholder(o, '…'), status);
    env.waiting.set(requestId, (m) => {
      if (requestId !== current) return;
      if (m.type === 'sweepProgress') status.textContent = `scale ${scale} · seed ${seed} · step ${m.step}/${m.steps}`;
      else if (m.type === 'sweepImage') {
        env.waiting.delete(requestId);
        live.dataset.state = 'done';
        const img = image(o, m.png, `seed ${m.seed} at LoRA scale ${m.scale}`);
        live.replaceChildren(h('div', { class: 'lsg-rowhead' }, `scale ${m.scale}`), h('figure', { class: 'lsg-fig' }, img, h('figcaption', { class: 'lsg-caption' }, `seed ${m.seed} · ${basename(o.sweep!.lora)} ×${m.scale} (preview)`)));
      } else if (m.type === 'sweepError') {
        env.waiting.delete(requestId);
        live.dataset.state = 'error';
        live.replaceChildren(h('div', { class: 'lsg-error' }, m.message));
      }
    });
    env.post!({ type: 'sweepScale', requestId, runId: o.runId, scale, seed });
  });
  box.append(h('label', { class: 'lsg-slider-row' }, h('span', {}, 'try scale'), slider, value), live);
  return box;
}

function figure(o: GenerationOutput, im: OutputImage, index: number, env: Env, title: string): HTMLElement {
  const fig = h('figure', { class: 'lsg-fig', 'data-index': String(index), 'data-seed': String(im.seed) });
  fig.append(im.data ? image(o, im.data, title) : placeholder(o, im.file.split('/').pop() ?? im.file, im.file));
  const lines = [`seed ${im.seed}`, o.layout === 'sweep' ? '' : im.label, ...im.loras.filter((l) => o.layout !== 'compare' || l.scale !== 0).map((l) => `${basename(l.file)} ×${l.scale}`)].filter(Boolean);
  const caption = h('figcaption', { class: 'lsg-caption' }, lines.join(' · '));
  fig.append(caption);
  if (env.post) {
    const actions = h('div', { class: 'lsg-actions' });
    const copy = h('button', { class: 'lsg-copy', title: 'Insert a new cell with this image’s settings and seed' }, 'copy to cell');
    copy.addEventListener('click', () => env.post!({ type: 'copySettings', runId: o.runId, image: index }));
    const save = h('button', { class: 'lsg-save', title: 'Save this image as a PNG file' }, 'save');
    save.addEventListener('click', () => env.post!({ type: 'saveImage', runId: o.runId, image: index }));
    actions.append(copy, save);
    fig.append(actions);
  }
  return fig;
}

function image(o: GenerationOutput, base64: string, alt: string): HTMLImageElement {
  const img = h('img', { class: 'lsg-img', alt, src: `data:image/png;base64,${base64}` }) as HTMLImageElement;
  sizeImage(o, img);
  return img;
}

function placeholder(o: GenerationOutput, text: string, file?: string): HTMLElement {
  const p = h('div', { class: 'lsg-img lsg-missing', ...(file ? { 'data-file': file } : {}) }, text);
  sizeImage(o, p);
  return p;
}

/** Small images (the tiny test models make 32–64 px) are shown at least 128 px wide, with crisp pixels. */
function sizeImage(o: GenerationOutput, el: HTMLElement): void {
  const w = o.settings.width || 128;
  const hgt = o.settings.height || 128;
  const scale = w < 128 ? Math.ceil(128 / w) : 1;
  el.style.width = `${w * scale}px`;
  el.style.aspectRatio = `${w} / ${hgt}`;
  if (scale > 1) el.classList.add('lsg-pixelated');
}

/** Images named by file but not inline (a reopened notebook): ask the extension for their bytes. */
function loadMissing(o: GenerationOutput, root: HTMLElement, env: Env): void {
  const missing = [...root.querySelectorAll<HTMLElement>('.lsg-missing[data-file]')];
  if (!missing.length || !env.post) return;
  const requestId = env.newId();
  env.waiting.set(requestId, (m) => {
    if (m.type !== 'images') return;
    env.waiting.delete(requestId);
    for (const el of missing) {
      const data = m.images[el.dataset.file!];
      if (data) el.replaceWith(image(o, data, el.textContent ?? ''));
      else if (data === null) el.textContent = `${el.textContent} (file missing)`;
    }
  });
  env.post({ type: 'loadImages', requestId, runId: o.runId, files: missing.map((el) => el.dataset.file!) });
}

function loraSummary(loras: readonly { file: string; scale: number }[]): string {
  return loras.map((l) => `${basename(l.file)} ×${l.scale}`).join(', ');
}

function basename(p: string): string {
  const name = p.split(/[\\/]/).pop() ?? p;
  // Trained LoRAs are all called pytorch_lora_weights.safetensors: their folder says which one it is.
  return name === 'pytorch_lora_weights.safetensors' ? (p.split(/[\\/]/).slice(-2, -1)[0] ?? name) : name.replace(/\.safetensors$/, '');
}

function h(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children.filter((c) => c !== ''));
  return el;
}

function style(): HTMLStyleElement {
  const s = document.createElement('style');
  s.textContent = `
.lsg { font-family: var(--vscode-font-family, sans-serif); font-size: var(--vscode-font-size, 13px); color: var(--vscode-foreground, #333); padding: 4px 0; }
.lsg-head { margin-bottom: 6px; }
.lsg-prompt { font-weight: 600; }
.lsg-neg, .lsg-params, .lsg-caption, .lsg-note, .lsg-colhead, .lsg-rowhead { color: var(--vscode-descriptionForeground, #666); font-size: 0.92em; }
.lsg-grid { display: grid; gap: 10px 12px; align-items: start; }
.lsg-colhead { font-weight: 600; }
.lsg-rowhead { align-self: center; font-weight: 600; white-space: nowrap; }
.lsg-fig { margin: 0; display: flex; flex-direction: column; gap: 3px; }
.lsg-img { display: block; max-width: 100%; height: auto; border: 1px solid var(--vscode-panel-border, #ccc); box-sizing: border-box; }
.lsg-pixelated { image-rendering: pixelated; }
.lsg-missing { display: flex; align-items: center; justify-content: center; font-size: 0.85em; color: var(--vscode-descriptionForeground, #777); background: var(--vscode-editor-inactiveSelectionBackground, #eee); overflow: hidden; text-align: center; }
.lsg-actions { display: flex; gap: 6px; }
.lsg-actions button { font: inherit; font-size: 0.85em; padding: 1px 6px; cursor: pointer; color: var(--vscode-button-secondaryForeground, #333); background: var(--vscode-button-secondaryBackground, #e5e5e5); border: none; border-radius: 2px; }
.lsg-actions button:hover { background: var(--vscode-button-secondaryHoverBackground, #d5d5d5); }
.lsg-slider-row { display: flex; align-items: center; gap: 8px; margin-top: 10px; }
.lsg-slider { width: 220px; }
.lsg-live { display: flex; align-items: center; gap: 12px; margin-top: 6px; }
.lsg-error { color: var(--vscode-errorForeground, #c00); white-space: pre-wrap; margin-top: 6px; }
`;
  return s;
}

// The Dataset view's page: counts and buckets, then one card per image (the picture, its name, size and bucket,
// its caption in a text box saved on Ctrl/Cmd+Enter or when the box loses focus with a change). Images without
// a caption come last, marked. Data: ToDatasetView (src/protocol/dataset_view.ts).
import './dataset.css';
import type { FromDatasetView, ToDatasetView } from '../../src/protocol/dataset_view.js';
import { fill, h } from '../dashboard/dom.js';

declare function acquireVsCodeApi(): { postMessage(msg: FromDatasetView): void };
const vscode = acquireVsCodeApi();

const summary = h('div', { className: 'summary', 'data-testid': 'dataset-summary', role: 'status' });
const grid = h('div', { className: 'grid', 'data-testid': 'dataset-grid' });
document.body.append(h('h1', {}, 'Dataset'), summary, grid);

window.addEventListener('message', (e: MessageEvent<ToDatasetView>) => {
  const m = e.data;
  if (m.type === 'dataset') {
    const v = m.view;
    fill(
      summary,
      h('p', {}, `${v.counts.images} images, ${v.counts.captioned} captioned, ${v.counts.uncaptioned} without a caption · ${v.layout} · repeats ${v.repeats} (each image once an epoch)`),
      h('p', { className: 'muted' }, `Buckets: ${v.buckets.map((b) => `${b.width}×${b.height} (${b.count})`).join(', ') || 'none'}`),
      ...v.problems.slice(0, 10).map((p) => h('p', { className: 'problem' }, p)),
    );
    fill(
      grid,
      ...v.images.map((img) => {
        const box = h('textarea', { className: 'caption', 'aria-label': `caption of ${img.name}`, 'data-name': img.name }) as HTMLTextAreaElement;
        box.value = img.captions?.[0] ?? '';
        box.readOnly = (img.captions?.length ?? 1) > 1;
        const initial = box.value;
        const save = () => box.value !== initial && vscode.postMessage({ type: 'saveCaption', name: img.name, caption: box.value });
        box.addEventListener('keydown', (k) => (k.ctrlKey || k.metaKey) && k.key === 'Enter' && save());
        box.addEventListener('blur', save);
        const size = img.width !== undefined ? `${img.width}×${img.height}` : 'size unknown';
        const bucket = img.bucket ? ` → ${img.bucket.width}×${img.bucket.height}` : '';
        return h(
          'figure',
          { className: img.captions ? 'card' : 'card uncaptioned', 'data-testid': 'dataset-image' },
          h('img', { src: img.src, alt: img.name }),
          h('figcaption', {}, h('span', { className: 'name' }, img.name), h('span', { className: 'muted' }, ` ${size}${bucket}${img.captions ? '' : ' · no caption'}`)),
          box,
        );
      }),
    );
  } else if (m.type === 'saved') {
    summary.dataset.saved = m.name;
  } else {
    summary.append(h('p', { className: 'problem' }, `Not saved: ${m.error}`));
  }
});
vscode.postMessage({ type: 'ready' });

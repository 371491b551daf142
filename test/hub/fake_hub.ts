// A Hub-compatible HTTP server for tests, on 127.0.0.1 (point HF_ENDPOINT at `url`). It implements the
// endpoints @huggingface/hub calls (read in node_modules/@huggingface/hub/dist: modelInfo/datasetInfo,
// listFiles, fileDownloadInfo + WebBlob range reads, whoAmI, createRepo, commit with preupload, the LFS
// batch API's basic transfer and the NDJSON commit), as the real Hub answers them: ETag / X-Linked-Etag
// (the LFS sha256), X-Repo-Commit, Range → 206, a cut or stalled download on request, 401 for gated repos without a token, 403 with one that
// has no access, 404 + X-Error-Code for missing repos. It records every request and every pushed commit.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export interface FakeRepo {
  type: 'model' | 'dataset';
  id: string;
  /** Revision name → files (repo path → bytes). `main` is required. */
  revisions: Record<string, Map<string, Buffer>>;
  /** Gated: requests without a token get 401; tokens not in `allowedTokens` get 403. */
  gated?: boolean;
  allowedTokens?: string[];
}

export interface PushedCommit {
  repo: string;
  title: string;
  files: Map<string, Buffer>;
}

export interface FakeHubOptions {
  /** Drop the connection after this many body bytes of the first GET of a file whose path ends with this. */
  dropDownload?: { pathEndsWith: string; afterBytes: number };
  /** Send this many body bytes of the first GET of such a file, then nothing more: the connection stays open (until `stop`), as a stalled network does. */
  stallDownload?: { pathEndsWith: string; afterBytes: number };
  /** Tokens push accepts, and the user name whoami answers. */
  writeTokens?: Record<string, string>;
}

const isLfs = (p: string) => /\.(safetensors|parquet|png|bin)$/.test(p);
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

/** Every file of a folder, as repo paths → bytes. */
export function folderFiles(dir: string, prefix = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) for (const [k, v] of folderFiles(path.join(dir, e.name), rel)) out.set(k, v);
    else out.set(rel, fs.readFileSync(path.join(dir, e.name)));
  }
  return out;
}

export class FakeHub {
  readonly requests: { method: string; url: string; range?: string; auth?: string }[] = [];
  readonly pushed: PushedCommit[] = [];
  readonly created: string[] = [];
  private readonly repos = new Map<string, { repo: FakeRepo; commits: Map<string, string> }>();
  private readonly lfs = new Map<string, Buffer>();
  private server?: http.Server;
  private dropped = false;
  private stalled = false;
  url = '';

  constructor(
    repos: FakeRepo[],
    private readonly o: FakeHubOptions = {},
  ) {
    for (const r of repos) this.addRepo(r);
  }

  addRepo(r: FakeRepo): void {
    const commits = new Map<string, string>();
    for (const [rev, files] of Object.entries(r.revisions)) {
      const h = crypto.createHash('sha1').update(`${r.type}/${r.id}@${rev}`);
      for (const [p, b] of [...files].sort()) h.update(p).update(b);
      commits.set(rev, h.digest('hex'));
    }
    this.repos.set(`${r.type}/${r.id}`, { repo: r, commits });
  }

  /** The commit a revision of a repo has. */
  commitOf(type: 'model' | 'dataset', id: string, rev = 'main'): string {
    return this.repos.get(`${type}/${id}`)!.commits.get(rev)!;
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          this.handle(req, res, Buffer.concat(chunks));
        } catch (e) {
          res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = undefined;
  }

  private json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }

  /** The repo and revision files a request may see, or an error already sent. */
  private access(req: http.IncomingMessage, res: http.ServerResponse, type: string, id: string, rev?: string) {
    const entry = this.repos.get(`${type}/${id}`);
    if (!entry) return void this.json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepositoryNotFound' });
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (entry.repo.gated) {
      if (!token) return void this.json(res, 401, { error: `Access to ${type} ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.` });
      if (!entry.repo.allowedTokens?.includes(token)) return void this.json(res, 403, { error: `Access to ${type} ${id} is restricted and you are not in the authorized list. Visit ${this.url}/${id} to ask for access.` });
    }
    const name = rev === undefined ? 'main' : rev === 'HEAD' ? 'main' : [...entry.commits].find(([n, c]) => n === rev || c === rev)?.[0];
    if (!name) return void this.json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'x-error-code': 'RevisionNotFound' });
    return { entry, files: entry.repo.revisions[name], commit: entry.commits.get(name)! };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const url = new URL(req.url!, this.url);
    const p = decodeURIComponent(url.pathname);
    this.requests.push({ method: req.method!, url: req.url!, range: req.headers.range, auth: req.headers.authorization });
    let m: RegExpExecArray | null;

    // info: /api/{models,datasets}/org/name/revision/<rev>
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(p)) && req.method === 'GET') {
      const type = m[1].slice(0, -1);
      const a = this.access(req, res, type, m[2], m[3]);
      if (!a) return;
      return this.json(res, 200, { _id: a.commit.slice(0, 24), id: m[2], sha: a.commit, private: false, gated: !!a.entry.repo.gated, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z', tags: [], siblings: [...a.files.keys()].map((rfilename) => ({ rfilename })) });
    }
    // listing: /api/{models,datasets}/org/name/tree/<rev>
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/(.+)$/.exec(p)) && req.method === 'GET') {
      const a = this.access(req, res, m[1].slice(0, -1), m[2], m[3]);
      if (!a) return;
      const entries = [...a.files].map(([fp, b]) => ({ type: 'file', oid: gitOid(b), size: b.length, path: fp, ...(isLfs(fp) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : {}) }));
      return this.json(res, 200, entries);
    }
    // files: /org/name/resolve/<rev>/<path>, /datasets/org/name/resolve/<rev>/<path>
    if ((m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/(.+)$/.exec(p)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const type = m[1] ? 'dataset' : 'model';
      const entry = this.repos.get(`${type}/${m[2]}`);
      const rest = m[3];
      const rev = entry && [...entry.commits.entries()].flatMap(([n, c]) => [n, c]).find((r) => rest.startsWith(`${r}/`));
      const a = this.access(req, res, type, m[2], rev ?? rest.split('/')[0]);
      if (!a) return;
      const file = rest.slice((rev ?? rest.split('/')[0]).length + 1);
      const b = a.files.get(file);
      if (!b) return this.json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
      const headers: Record<string, string> = { etag: `"${gitOid(b)}"`, 'x-repo-commit': a.commit, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
      if (isLfs(file)) Object.assign(headers, { "x-linked-etag": `"${sha256(b)}"`, "x-linked-size": String(b.length) });
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      let start = 0;
      let end = b.length - 1;
      if (range) {
        start = Number(range[1]);
        end = range[2] ? Math.min(Number(range[2]), b.length - 1) : b.length - 1;
        headers['content-range'] = `bytes ${start}-${end}/${b.length}`;
      }
      const slice = b.subarray(start, end + 1);
      res.writeHead(range ? 206 : 200, { ...headers, 'content-length': String(slice.length) });
      if (req.method === 'HEAD') return void res.end();
      const drop = this.o.dropDownload;
      if (drop && !this.dropped && file.endsWith(drop.pathEndsWith) && slice.length > 1) {
        this.dropped = true;
        res.write(slice.subarray(0, drop.afterBytes), () => setImmediate(() => res.socket?.destroy()));
        return;
      }
      const stall = this.o.stallDownload;
      if (stall && !this.stalled && file.endsWith(stall.pathEndsWith) && slice.length > stall.afterBytes) {
        this.stalled = true;
        res.write(slice.subarray(0, stall.afterBytes));
        return;
      }
      return void res.end(slice);
    }
    // push
    const writer = (req: http.IncomingMessage) => this.o.writeTokens?.[(req.headers.authorization ?? '').replace(/^Bearer /, '')];
    if (p === '/api/whoami-v2') {
      const name = writer(req);
      return name ? this.json(res, 200, { type: 'user', name, auth: { accessToken: { role: 'write' } } }) : this.json(res, 401, { error: 'Invalid credentials in Authorization header' });
    }
    if (p === '/api/repos/create' && req.method === 'POST') {
      if (!writer(req)) return this.json(res, 401, { error: 'Invalid credentials in Authorization header' });
      const q = JSON.parse(body.toString()) as { name: string; organization?: string; type: string };
      const id = `${q.organization}/${q.name}`;
      if (this.repos.has(`model/${id}`)) return this.json(res, 409, { error: 'You already created this model repo', url: `${this.url}/${id}` });
      this.created.push(id);
      this.addRepo({ type: 'model', id, revisions: { main: new Map() } });
      return this.json(res, 200, { url: `${this.url}/${id}`, name: id });
    }
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/preupload\/(.+)$/.exec(p)) && req.method === 'POST') {
      if (!writer(req)) return this.json(res, 401, { error: 'Invalid credentials in Authorization header' });
      const q = JSON.parse(body.toString()) as { files: { path: string }[] };
      return this.json(res, 200, { files: q.files.map((f) => ({ path: f.path, uploadMode: isLfs(f.path) ? 'lfs' : 'regular', shouldIgnore: false })) });
    }
    if ((m = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(p)) && req.method === 'POST') {
      const q = JSON.parse(body.toString()) as { objects: { oid: string; size: number }[] };
      return this.json(res, 200, { transfer: 'basic', objects: q.objects.map((o) => ({ oid: o.oid, size: o.size, actions: { upload: { href: `${this.url}/lfs-upload/${o.oid}` } } })) }, { 'content-type': 'application/vnd.git-lfs+json' });
    }
    if ((m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(p)) && req.method === 'PUT') {
      if (sha256(body) !== m[1]) return this.json(res, 400, { error: 'sha256 mismatch' });
      this.lfs.set(m[1], body);
      return void res.writeHead(200).end();
    }
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/commit\/(.+)$/.exec(p)) && req.method === 'POST') {
      if (!writer(req)) return this.json(res, 401, { error: 'Invalid credentials in Authorization header' });
      const entry = this.repos.get(`model/${m[1]}`);
      if (!entry) return this.json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepositoryNotFound' });
      const files = new Map<string, Buffer>();
      let title = '';
      for (const line of body.toString().split('\n').filter(Boolean)) {
        const { key, value } = JSON.parse(line) as { key: string; value: { summary?: string; path: string; content?: string; encoding?: string; oid?: string } };
        if (key === 'header') title = value.summary ?? '';
        else if (key === 'file') files.set(value.path, Buffer.from(value.content!, value.encoding === 'base64' ? 'base64' : 'utf8'));
        else if (key === 'lfsFile') {
          const b = this.lfs.get(value.oid!);
          if (!b) return this.json(res, 422, { error: `LFS object ${value.oid} was not uploaded` });
          files.set(value.path, b);
        }
      }
      this.pushed.push({ repo: m[1], title, files });
      const main = entry.repo.revisions.main;
      for (const [k, v] of files) main.set(k, v);
      this.addRepo(entry.repo);
      return this.json(res, 200, { commitOid: this.commitOf('model', m[1]), commitUrl: `${this.url}/${m[1]}/commit/${this.commitOf('model', m[1])}`, success: true });
    }
    this.json(res, 404, { error: `fake hub: no route for ${req.method} ${p}` });
  }
}

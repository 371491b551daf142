// The dashboard webview's page. Pure (no `vscode`), so the browser test loads exactly this page.
// Strict Content-Security-Policy: nothing loads unless it comes from the webview's resource origin, and the
// one script must carry this page's nonce. No inline script or style attribute is used.
import crypto from 'node:crypto';

export interface DashboardHtmlOptions {
  /** webview.cspSource: the origin of the webview's local resources. */
  cspSource: string;
  /** asWebviewUri of dist/webview/dashboard.js and dashboard.css. */
  scriptUri: string;
  styleUri: string;
  title: string;
  nonce?: string;
}

export function makeNonce(): string {
  return crypto.randomBytes(18).toString('base64url');
}

export function dashboardHtml(o: DashboardHtmlOptions): string {
  const nonce = o.nonce ?? makeNonce();
  const csp = [
    "default-src 'none'",
    `img-src ${o.cspSource} data:`,
    `style-src ${o.cspSource} 'nonce-${nonce}'`,
    `font-src ${o.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" nonce="${nonce}" href="${escapeAttr(o.styleUri)}">
<title>${escapeText(o.title)}</title>
</head>
<body>
<script nonce="${nonce}" src="${escapeAttr(o.scriptUri)}"></script>
</body>
</html>
`;
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

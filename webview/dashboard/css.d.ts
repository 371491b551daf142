// esbuild bundles CSS imported from the entry into dist/webview/dashboard.css; TypeScript only needs to
// know such imports exist.
declare module '*.css';

#!/usr/bin/env node
// Builds the admin console (ui/) into dist/ui: one JavaScript bundle (Preact and
// htm, bundled by esbuild from node_modules: nothing is fetched at build or run
// time), the stylesheet, index.html and the icon. No source map, no inline
// script or style: the console is served under a strict CSP (src/http/routes/ui.ts).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const src = path.join(root, 'ui');
const out = path.join(root, 'dist', 'ui');

async function buildUi() {
  const esbuild = require(require.resolve('esbuild', { paths: [root] }));
  fs.mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(src, 'src', 'main.js')],
    bundle: true,
    format: 'esm',
    target: ['es2020'],
    minify: true,
    legalComments: 'none',
    outfile: path.join(out, 'app.js'),
    logLevel: 'warning',
  });
  await esbuild.build({
    entryPoints: [path.join(src, 'app.css')],
    bundle: true,
    minify: true,
    outfile: path.join(out, 'app.css'),
    logLevel: 'warning',
  });
  for (const f of ['index.html', 'favicon.svg']) fs.copyFileSync(path.join(src, f), path.join(out, f));
}

module.exports = { buildUi };
if (require.main === module) {
  buildUi().catch((e) => {
    process.stderr.write(`hsmca: building the console failed: ${e.message}\n`);
    process.exit(1);
  });
}
